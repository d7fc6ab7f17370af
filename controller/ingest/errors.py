"""The one exception ingest raises for bad input, so callers can dead-letter a record and go on."""

from __future__ import annotations


class IngestError(ValueError):
    """A record (or line) that cannot become an Alert: bad JSON, unknown shape, missing field, invalid value.

    `problem` says what is wrong; `origin` says where ("file.jsonl:12"). They are kept apart so the
    dead-letter file can store the problem next to its own source/line columns, while `str()` gives the
    one-line message a human needs ("file.jsonl:12: missing required field transaction.client_ip").
    """

    def __init__(self, problem: str, origin: str | None = None) -> None:
        self.problem = problem
        self.origin = origin
        super().__init__(f"{origin}: {problem}" if origin else problem)

    def at(self, origin: str) -> IngestError:
        """The same problem located at `origin` (helpers deep in a parser do not know the file or line)."""
        return IngestError(self.problem, origin)
