"""`fedcredit data synth|check`: generate synthetic SME tables and validate party tables."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


PROGRESS_FROM_FIRMS = 200_000  # smaller universes are written in a few seconds: no bar


@app.command()
def synth(
    firms: int = typer.Option(10_000, "--firms", min=1, help="Number of firms in the universe."),
    banks: int = typer.Option(3, "--banks", min=1, max=26, help="Number of banks (bank_a, bank_b, ...)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    seed: int = typer.Option(42, "--seed", help="Seed; same seed and sizes give identical files."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet."),
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
    typer.echo(
        f"wrote {out}: credit_centre {stats.centre_rows} rows; "
        + ", ".join(f"{b.name} {b.rows} rows ({b.default_rate:.1%} default)" for b in stats.banks)
        + f" in {stats.seconds:.1f} s"
    )


@app.command()
def check(
    file: Path = typer.Argument(..., help="CSV or Parquet party table."),
    role: str = typer.Option(..., "--role", help="bank or credit_centre"),
    show: int = typer.Option(200, "--show", help="Print at most this many problems (0 = all); all are counted."),
    rejects: Path = typer.Option(None, "--rejects", help="Also write every problem to this CSV."),
) -> None:
    """Validate FILE against the ROLE schema; list every rejected row; exit 1 if any."""
    from fedcredit.data.schema import DataError
    from fedcredit.data.validate import check_table

    try:
        rep = check_table(file, role)
    except DataError as exc:  # unknown role
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if rep.ok:
        n_feat = 0 if rep.frame is None else rep.frame.shape[1] - (2 if rep.role == "bank" else 1)
        typer.echo(f"OK {file}: {rep.n_rows} rows, {n_feat} feature columns, role {rep.role}")
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
