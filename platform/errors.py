"""The one exception type that user mistakes raise: the CLI prints it as a single line, no traceback."""

from __future__ import annotations


class ClinFuseError(Exception):
    """A problem the user can fix: the message names what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)
