"""Every YAML file under deploy/ parses, holds mappings only, and repeats no key (PyYAML would keep the last one
silently: a duplicated `env:` or `volumes:` drops half of a container's settings)."""

from __future__ import annotations

from pathlib import Path

import yaml


class _DuplicateKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping naming one key twice (merge keys `<<` may still be overridden)."""


def _construct_mapping(loader: _DuplicateKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def test_yaml_file_parses_into_mappings(yaml_file: Path, deploy) -> None:
    documents = deploy.load_yaml_documents(yaml_file)
    assert documents, f"{deploy.relative(yaml_file)} holds no YAML document"
    for index, document in enumerate(documents):
        assert isinstance(document, dict), f"document {index} of {deploy.relative(yaml_file)} is not a mapping"


def test_yaml_file_repeats_no_key(yaml_file: Path) -> None:
    list(yaml.load_all(yaml_file.read_text(), Loader=_DuplicateKeyLoader))


def test_yaml_file_has_no_tabs(yaml_file: Path) -> None:
    lines = [n for n, line in enumerate(yaml_file.read_text().splitlines(), 1) if "\t" in line]
    assert not lines, f"tab characters on lines {lines}"


def test_duplicate_key_check_catches_a_duplicate() -> None:
    text = "spec:\n  env: [a]\n  env: [b]\n"
    try:
        yaml.load(text, Loader=_DuplicateKeyLoader)
    except yaml.constructor.ConstructorError as exc:
        assert "duplicate key 'env'" in str(exc)
    else:
        raise AssertionError("a duplicated key passed")
    merged = "base: &b {x: 1}\nitem:\n  <<: *b\n  x: 2\n"
    assert yaml.load(merged, Loader=_DuplicateKeyLoader)["item"]["x"] == 2


def test_every_deploy_yaml_is_checked(deploy) -> None:
    found = {deploy.relative(p) for p in deploy.collected().yaml_files}
    assert {"deploy/docker-compose.yml", "deploy/k8s/kustomization.yaml"} <= found
    assert len([f for f in found if f.startswith("deploy/k8s/")]) >= 8
