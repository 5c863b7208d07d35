"""``fedcredit config show SCENARIO``: every setting of a scenario, what it is and where it comes from.

For each section: each key with its effective value (from the file, or the default), the default,
the constraint and the description -- all from the one declaration of the section
(:mod:`protocols.common.settings`), so what is printed cannot drift from what is checked. ``--json``
prints the same for machines.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fedcredit import config
from fedcredit.cli.output import fail, plain

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inspect scenario settings.")


@dataclasses.dataclass(frozen=True)
class SettingRow:
    """One setting as ``config show`` prints it; ``key`` is dotted for nested tables."""

    key: str
    value: Any
    default: Any
    type: str
    constraint: str
    description: str
    in_file: bool


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _in_file(table: Mapping[str, Any], dotted: str) -> bool:
    node: Any = table
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def section_rows(scenario: config.Scenario, name: str) -> list[SettingRow]:
    """The rows of section ``[name]`` of ``scenario``: effective values next to the defaults."""
    cls = config.section_type(name)
    defaults = {d.key: d.default for d in config.describe(cls)}
    raw = scenario.section(name)
    return [
        SettingRow(
            key=d.key,
            value=_jsonable(d.default),
            default=_jsonable(defaults.get(d.key)),
            type=d.type,
            constraint=d.rule,
            description=d.doc,
            in_file=_in_file(raw, d.key),
        )
        for d in config.describe(cls, scenario.settings(name))
    ]


def _table(name: str, rows: list[SettingRow], present: bool) -> Table:
    title = f"[{name}]" + ("" if present else " (not in the file: defaults)")
    table = Table(title=plain(title), title_justify="left", show_lines=False)
    table.add_column("setting", no_wrap=True)
    for column in ("value", "default", "constraint"):
        table.add_column(column, overflow="fold")
    table.add_column("description", ratio=1)
    for r in rows:
        value = plain(json.dumps(r.value))
        table.add_row(
            plain(r.key),
            f"[bold]{value}[/]" if r.in_file else value,
            plain(json.dumps(r.default)),
            plain(r.constraint or r.type),
            plain(r.description),
        )
    if not rows:
        table.add_row("", "", "", "", "(no settings: any key here is rejected)")
    return table


@app.command()
def show(
    scenario: Path = typer.Argument(..., help="Scenario TOML (configs/*.toml)."),
    section: list[str] = typer.Option([], "--section", "-s", help="Only this section (repeatable), e.g. lr."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Print every setting of SCENARIO: effective value (bold = set in the file), default, constraint."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160  # piped into a file or a pager: do not squeeze the tables to 80 columns
    try:
        sc = config.load(scenario)
        names = section or list(config.SECTION_NAMES)
        rows = {name: section_rows(sc, name) for name in names}
    except config.ConfigError as exc:
        raise fail(Console(stderr=True, highlight=False), exc) from None
    if as_json:
        doc = {
            "scenario": sc.name,
            "mode": sc.mode,
            "path": str(sc.path),
            "sections": {
                name: {"in_file": name in sc.sections, "settings": [dataclasses.asdict(r) for r in settings]}
                for name, settings in rows.items()
            },
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    console.print(f"scenario {sc.name!r} (mode {sc.mode}) from {sc.path}", markup=False)
    for name, settings in rows.items():
        console.print(_table(name, settings, name in sc.sections))
