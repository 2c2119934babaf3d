"""User-facing errors: the CLI prints these as one clear line and exits non-zero."""

from __future__ import annotations


class MedistillError(Exception):
    """Base class for errors caused by user input or configuration (never a bug)."""


class DataError(MedistillError):
    """A bad record in an input file, located by file, line and field.

    Every loader raises this instead of a bare ``KeyError``/``JSONDecodeError`` so a user
    sees exactly where to look: ``data.jsonl:17: field 'options': ...``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = path or "<input>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
