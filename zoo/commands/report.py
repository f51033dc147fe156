"""The one place the ``zoo`` command prints: results and progress on stdout, warnings and errors on stderr.

Library code never prints: it returns results and takes a ``say`` callback, which commands bind to
``Reporter.say``; warnings it logs through ``logging`` (the ``zoo`` loggers) come out here as ``warning: ...``.
"""

import logging
import sys

from rich.console import Console
from rich.table import Table

from zoo.errors import ZooError


class Reporter:
    def __init__(self) -> None:
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def say(self, text: str) -> None:
        """A progress or result line (rich markup allowed)."""
        self.out.print(text)

    def data(self, text: str) -> None:
        """A line meant to be read by programs (a path, a TSV row): printed exactly as it is."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A line for the person, beside data on stdout (a header, where the data came from)."""
        self.err.print(text, markup=False)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/yellow] {text}")

    def error(self, err: ZooError) -> None:
        self.err.print(f"error: {err}", markup=False)
        if err.hint:
            self.err.print(f"hint: {err.hint}", markup=False)

    def capture_warnings(self) -> None:
        """Warnings the zoo's modules log (``logging.getLogger(__name__).warning``) print as ``warning: ...``."""
        zoo_logger = logging.getLogger("zoo")
        if _WARNING_LINES not in zoo_logger.handlers:
            zoo_logger.addHandler(_WARNING_LINES)


class _WarningLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[yellow]warning:[/yellow] {record.getMessage()}")


_WARNING_LINES = _WarningLines(logging.WARNING)  # one per process, however often the CLI runs in it
