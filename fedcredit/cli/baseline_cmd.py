"""`fedcredit baseline`: pooled LR and GBDT, bank-only vs joint -- the yardstick for federated runs."""

from __future__ import annotations

from pathlib import Path

import typer


def baseline(
    dataset: str = typer.Option("default_credit", "--dataset", help="'default_credit' or a synth DIR"),
    out: Path = typer.Option(None, "--out", help="Directory for metrics.json (not written if omitted)."),
    seed: int = typer.Option(42, "--seed", help="Model seed (and USCC-hash split key for synth data)."),
) -> None:
    """Train pooled LR and GBDT on bank-only vs bank + centre features and print AUC/KS/Gini."""
    from fedcredit.baseline import run_baseline
    from fedcredit.data.schema import DataError

    try:
        run_baseline(dataset, out, seed)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
