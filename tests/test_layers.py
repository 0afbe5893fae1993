"""The import direction of the source folders (docs/architecture.md, "Layers"): platform <- models <- kinds <-
pipelines <- dashboards. Nothing imports a layer above its own, except a kind's dashboard section (section.py),
which draws with the dashboard's chart helpers; pipelines and dashboards reach kinds only through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["platform", "models", "kinds", "pipelines", "dashboards"]


def _imports(path: Path) -> set[str]:
    """clinfuse modules imported by a file, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("clinfuse.")}


def _violations() -> list[str]:
    problems = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((REPO / layer).rglob("*.py")):
            for module in _imports(path):
                target = module.split(".")[1]
                if target not in LAYERS:
                    continue
                allowed = LAYERS.index(target) <= rank
                if layer == "kinds" and path.name == "section.py" and target == "dashboards":
                    allowed = True
                if layer == "pipelines" and path.name == "cli.py" and target == "dashboards":
                    allowed = True  # the command line is the top: its `dashboard` command starts the app
                if layer in ("pipelines", "dashboards") and target == "kinds":
                    allowed = False  # through clinfuse.platform.kinds.get_kind, like a hospital's own kind
                if not allowed:
                    problems.append(f"{path.relative_to(REPO)} imports {module}")
    return problems


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert _violations() == []
