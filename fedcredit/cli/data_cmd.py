"""`fedcredit data synth|check`: generate synthetic SME tables and validate party tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fedcredit.data.schema import DataError

if TYPE_CHECKING:
    from fedcredit.data.readers import ReadOptions

app = typer.Typer(no_args_is_help=True, add_completion=False)


PROGRESS_FROM_FIRMS = 200_000  # smaller universes are written in a few seconds: no bar


@app.command()
def synth(
    firms: int = typer.Option(10_000, "--firms", min=1, help="Number of firms in the universe."),
    banks: int = typer.Option(3, "--banks", min=1, max=26, help="Number of banks (bank_a, bank_b, ...)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    seed: int = typer.Option(42, "--seed", help="Seed; same seed and sizes give identical files."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
    sparse: bool = typer.Option(
        False, "--sparse", help="Real-shaped centre table: text categories, ~30 % missing by firm age and size."
    ),
) -> None:
    """Write credit_centre and bank_* tables plus README.md describing the ground truth."""
    from fedcredit.data.synth import generate

    if fmt not in ("csv", "parquet"):
        typer.echo("error: --format must be csv or parquet", err=True)
        raise typer.Exit(2)
    if firms >= PROGRESS_FROM_FIRMS:
        from rich.progress import Progress

        with Progress(*Progress.get_default_columns(), transient=True) as progress:
            task = progress.add_task(f"generating {firms:,} firms", total=firms)
            stats = generate(
                firms, banks, out, seed=seed, fmt=fmt, on_chunk=lambda done: progress.update(task, completed=done)
            )
    else:
        stats = generate(firms, banks, out, seed=seed, fmt=fmt)
    if sparse:  # issue 17: structured missingness and categorical columns (fedcredit/data/synth_sparse.py)
        from fedcredit.data.synth_sparse import sparsify_dir

        share = sparsify_dir(out, seed=seed)
        typer.echo(f"sparsified credit_centre: {share:.1%} of its feature cells missing, 3 categorical columns")
    typer.echo(
        f"wrote {out}: credit_centre {stats.centre_rows} rows; "
        + ", ".join(f"{b.name} {b.rows} rows ({b.default_rate:.1%} default)" for b in stats.banks)
        + f" in {stats.seconds:.1f} s"
    )


def _read_options(
    schema: Path | None,
    id_column: str | None,
    label_column: str | None,
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
    categorical: list[str] | None,
    missing: list[str] | None,
    max_levels: int | None,
    strict: bool,
) -> ReadOptions:
    """Flags over a sidecar schema's ``[data]`` table over the defaults."""
    import tomllib

    from fedcredit.data.readers import ReadOptions

    raw: dict = {}
    if schema is not None:
        try:
            raw = dict(tomllib.loads(schema.read_text(encoding="utf-8")).get("data", {}))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"cannot read schema file: {exc}", file=str(schema)) from None
    flags = {
        "id_column": id_column,
        "label_column": label_column,
        "encoding": encoding,
        "delimiter": delimiter.replace("\\t", "\t") if delimiter else None,
        "sheet": int(sheet) if sheet and sheet.isdigit() else sheet,
        "categorical": list(categorical) if categorical else None,
        "missing_values": list(missing) if missing else None,
        "max_levels": max_levels,
    }
    raw.update({k: v for k, v in flags.items() if v is not None})
    raw["allow_missing"] = not strict
    return ReadOptions.from_mapping(raw, where=str(schema) if schema else "data check options")


@app.command()
def check(
    file: Path = typer.Argument(..., help="CSV, Excel (.xlsx) or Parquet party table."),
    role: str = typer.Option(..., "--role", help="bank or credit_centre"),
    show: int = typer.Option(200, "--show", help="Print at most this many problems (0 = all); all are counted."),
    rejects: Path = typer.Option(None, "--rejects", help="Also write every problem to this CSV."),
    schema: Path = typer.Option(None, "--schema", help="Sidecar TOML whose [data] table holds the options below."),
    id_column: str = typer.Option(None, "--id-column", help="The file's id column (e.g. 统一社会信用代码)."),
    label_column: str = typer.Option(None, "--label-column", help="The file's label column (e.g. 是否违约)."),
    encoding: str = typer.Option(None, "--encoding", help="Override encoding detection (e.g. gb18030)."),
    delimiter: str = typer.Option(None, "--delimiter", help="Override delimiter sniffing (',', ';', '\\t', '|')."),
    sheet: str = typer.Option(None, "--sheet", help="Excel sheet name or 0-based index."),
    categorical: list[str] = typer.Option(None, "--categorical", help="A categorical column (repeatable)."),
    missing: list[str] = typer.Option(None, "--missing", help="A cell text meaning missing (repeatable)."),
    max_levels: int = typer.Option(None, "--max-levels", help="Most levels a categorical column may have (50)."),
    strict: bool = typer.Option(False, "--strict", help="Reject empty feature cells instead of reporting them."),
) -> None:
    """Validate FILE against the ROLE schema; list every rejected row; exit 1 if any.

    Empty cells and declared sentinels are accepted in feature columns and reported as a
    missing rate per column; declared categorical columns are reported with their level counts.
    """
    from fedcredit.data.validate import check_table

    try:
        opts = _read_options(
            schema, id_column, label_column, encoding, delimiter, sheet, categorical, missing, max_levels, strict
        )
        rep = check_table(file, role, opts)
    except DataError as exc:  # unknown role, bad options
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if rep.ok:
        n_feat = 0 if rep.frame is None else rep.frame.shape[1] - (2 if rep.role == "bank" else 1)
        typer.echo(f"OK {file}: {rep.n_rows} rows, {n_feat} feature columns, role {rep.role} ({rep.read_info})")
        missing_cols = {c: r for c, r in rep.missing_rate.items() if r > 0}
        if missing_cols:
            typer.echo("missing rate per column:")
            for c, r in missing_cols.items():
                typer.echo(f"  {c:<32} {r:7.2%}")
        if rep.levels:
            typer.echo("categorical columns (levels):")
            for c, k in rep.levels.items():
                typer.echo(f"  {c:<32} {k}")
        return
    shown = rep.issues if show <= 0 else rep.issues[:show]
    for issue in shown:
        typer.echo(issue.describe(str(file)))
    if len(shown) < len(rep.issues):
        typer.echo(f"... {len(rep.issues) - len(shown)} more problem(s) not shown (use --show 0 or --rejects)")
    if rejects is not None:
        import csv

        with open(rejects, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["row", "column", "kind", "message"])
            for i in rep.issues:
                w.writerow([i.row if i.row is not None else "", i.column or "", i.kind, i.message])
    typer.echo("problems by kind and column:")
    for (kind, col), n in sorted(rep.counts().items()):
        typer.echo(f"  {kind:<16} {col:<24} {n}")
    rows = len(rep.rejected_rows)
    typer.echo(
        f"REJECTED {file}: {len(rep.issues)} problem(s) in {rows} of {rep.n_rows} row(s)"
        + ("" if rows or not rep.issues else " (file-level)")
    )
    raise typer.Exit(1)
