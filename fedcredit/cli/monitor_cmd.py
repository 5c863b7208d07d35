"""`fedcredit monitor psi|csi`: stability of the joint score (bank) and of each party's own columns.

Both run locally at one party on its own files: PSI on the bank's development and recent score
files, CSI on a party's development and recent tables (read with the same options as `data
check`: encodings, id column, categorical columns, missing values). Exit 0 when everything is
below the alert threshold (0.25 by default), 1 otherwise, so a scheduler can page someone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from fedcredit.data.schema import DataError

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _emit(rows: list[dict], out: Path | None, alert: float) -> None:
    typer.echo(f"{'column':<32} {'PSI':>9}  verdict   missing dev -> recent")
    for r in rows:
        typer.echo(
            f"{r['column']:<32} {r['psi']:9.4f}  {r['verdict']:<8}  "
            f"{r['dev_missing_rate']:.1%} -> {r['recent_missing_rate']:.1%}"
        )
    if out is not None:
        out.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
        typer.echo(f"wrote {out}")
    if any(r["psi"] >= alert for r in rows):
        raise typer.Exit(1)


@app.command()
def psi(
    dev: Path = typer.Argument(..., help="Development scores (CSV/xlsx/Parquet)."),
    recent: Path = typer.Argument(..., help="Recent applicants' scores."),
    column: str = typer.Option("score", "--column", help="The score column."),
    bins: int = typer.Option(10, "--bins", min=2, help="Equal-count bins of the development scores."),
    warn: float = typer.Option(0.1, "--warn"),
    alert: float = typer.Option(0.25, "--alert"),
    out: Path = typer.Option(None, "--out", help="Also write the result as JSON."),
) -> None:
    """Population stability index of the joint score (run at the bank)."""
    from fedcredit.data.readers import read_raw
    from fedcredit.data.stability import stability

    try:
        vals = []
        for p in (dev, recent):
            df, info = read_raw(p)
            if column not in df.columns:
                raise DataError(f"no score column {column!r} ({info.describe()})", file=str(p), column=column)
            v = df[column].astype(float).to_numpy()
            vals.append(v[:, None])
        res = stability(vals[0], vals[1], [column], n_bins=bins, warn=warn, alert=alert)
    except (DataError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _emit([r.as_dict() for r in res], out, alert)


@app.command()
def csi(
    dev: Path = typer.Argument(..., help="Development table of this party."),
    recent: Path = typer.Argument(..., help="Recent table of this party (same columns)."),
    role: str = typer.Option(..., "--role", help="bank or credit_centre"),
    id_column: str = typer.Option(None, "--id-column"),
    label_column: str = typer.Option(None, "--label-column"),
    encoding: str = typer.Option(None, "--encoding"),
    categorical: list[str] = typer.Option(None, "--categorical", help="A categorical column (repeatable)."),
    missing: list[str] = typer.Option(None, "--missing", help="A cell text meaning missing (repeatable)."),
    bins: int = typer.Option(10, "--bins", min=2),
    warn: float = typer.Option(0.1, "--warn"),
    alert: float = typer.Option(0.25, "--alert"),
    out: Path = typer.Option(None, "--out", help="Also write the result as JSON."),
) -> None:
    """Characteristic stability index of each of this party's own columns."""
    from fedcredit.data.loaders import load_party_table
    from fedcredit.data.readers import ReadOptions
    from fedcredit.data.stability import stability

    raw: dict = {"allow_missing": True}
    for k, v in {
        "id_column": id_column,
        "label_column": label_column,
        "encoding": encoding,
        "categorical": list(categorical) if categorical else None,
        "missing_values": list(missing) if missing else None,
    }.items():
        if v is not None:
            raw[k] = v
    try:
        opts = ReadOptions.from_mapping(raw)
        d, r = load_party_table(dev, role, opts), load_party_table(recent, role, opts)
        if d.feature_names != r.feature_names:
            raise DataError(
                f"recent columns {r.feature_names} differ from development {d.feature_names}", file=str(recent)
            )
        # level codes must mean the same level in both files: re-map recent codes by level text
        Xr = r.features.copy()
        for col, levels in d.categorical.items():
            j = d.feature_names.index(col)
            lookup = {lv: i for i, lv in enumerate(levels)}
            rl = r.categorical.get(col, [])
            mapped = [lookup.get(rl[int(c)], len(levels)) if not np.isnan(c) else np.nan for c in Xr[:, j]]
            Xr[:, j] = np.asarray(mapped, dtype=np.float64)  # a new level -> code L: the missing bin
        cats = {c: len(lv) for c, lv in d.categorical.items()}
        res = stability(d.features, Xr, d.feature_names, categorical=cats, n_bins=bins, warn=warn, alert=alert)
    except (DataError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _emit([x.as_dict() for x in res], out, alert)
