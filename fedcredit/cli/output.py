"""Printing for the CLI: rich markup for our own styling, never for what we print.

Rich reads ``[...]`` as markup, so an error such as ``no [parties.<name>] tables`` would reach the
terminal as ``no  tables``. Every message, path or value that is not our own markup goes through
:func:`plain` (``rich.markup.escape``) before it is printed.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape


def plain(value: object) -> str:
    """``value`` as text that rich prints literally (brackets included)."""
    return escape(str(value))


def print_error(console: Console, message: object, *, label: str = "error:", style: str = "red") -> None:
    """``label message`` in ``style``, the message intact and never wrapped mid-line by rich."""
    console.print(f"[{style}]{plain(label)}[/] {plain(message)}", soft_wrap=True)


def fail(console: Console, message: object, code: int = 2, *, label: str = "error:", style: str = "red") -> typer.Exit:
    """Print the error and return the :class:`typer.Exit` to raise (``raise fail(...) from None``)."""
    print_error(console, message, label=label, style=style)
    return typer.Exit(code)
