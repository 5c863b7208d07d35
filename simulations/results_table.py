"""Regenerate the README's quality figures from the shipped configs (``make results``).

Runs ``fedcredit simulate configs/NAME.toml --out OUT/NAME`` for every shipped training scenario
(the exact command a reader would type; ``--reuse`` reads runs already in OUT instead), then
prints two Markdown tables: the quality rows of "Results at a glance" and one row per shipped
config. Every figure comes from that run's ``metrics.json``; nothing is typed in by hand.

    python -m simulations.results_table --out runs/results [--reuse] [--only vertical-lr,secureboost]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

# Every shipped scenario that trains a model; configs/inference.toml scores applicants with
# runs/demo's model and has no test-set quality figure of its own.
SHIPPED = (
    "vertical-lr",
    "secureboost",
    "scorecard",
    "vertical-lr-synthetic",
    "horizontal-plain",
    "horizontal-secagg",
    "horizontal-ckks",
    "horizontal-noniid",
    "horizontal-synthetic",
)


@dataclass(frozen=True)
class Headline:
    """A quality row of the README's "Results at a glance" table."""

    what: str
    config: str
    anchor: str


HEADLINES = (
    Headline("vertical LR on default_credit, test AUC", "vertical-lr", "FATE issue #565: 0.42 with poor defaults"),
    Headline(
        "vertical SecureBoost, depth 3, test AUC", "secureboost", "centralised GBDT on the same rows {gbdt_joint}"
    ),
)


def command(name: str, out: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "fedcredit"), "simulate", f"configs/{name}.toml", "--out", str(out)]


def run(name: str, out_root: Path, reuse: bool) -> dict:
    out = out_root / name
    metrics = out / "metrics.json"
    if not (reuse and metrics.exists()):
        if (out / "ledger.sqlite").exists():
            raise SystemExit(f"{out} already holds a run: remove it or pass --reuse")
        env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
        print("$", " ".join(command(name, out)), file=sys.stderr, flush=True)
        subprocess.run(command(name, out), cwd=ROOT, env=env, check=True, stdout=sys.stderr)
    status = json.loads((out / "status.json").read_text())
    if status.get("status") != "completed" or not (status.get("verification") or {}).get("ok"):
        raise SystemExit(f"{name}: the run did not complete with a verified ledger ({out / 'status.json'})")
    m = json.loads(metrics.read_text())
    m.setdefault("mode", status.get("mode"))
    return m


def _c(m: dict, key: str) -> str:
    r = (m.get("centralised") or {}).get(key)
    return f"{r['auc']:.4f}" if r else "n/a"


def headline_row(h: Headline, m: dict) -> str:
    cmd = f"`fedcredit simulate configs/{h.config}.toml`"
    if m.get("mode") == "secureboost":
        size = f"{m.get('trees')} trees"
        text = f"{cmd}: **{m['auc']:.4f}** with {size} (bank-only GBDT {_c(m, 'gbdt_bank_only')})"
    else:
        text = f"{cmd}: **{m['auc']:.4f}** (pooled LR on the same features {_c(m, 'lr_joint')}; bank alone {_c(m, 'lr_bank_only')})"
    anchor = h.anchor.format(gbdt_joint=_c(m, "gbdt_joint"))
    return f"| {h.what} | {text} | {anchor} |"


def config_row(name: str, m: dict) -> str:
    mode = m.get("mode")
    if mode == "horizontal":
        size = f"{m.get('rounds')} rounds, {len(m.get('banks', {}))} banks, {m.get('aggregation')}"
        pooled = (m.get("centralised") or {}).get("pooled_same_model") or {}
        ref = f"pooled same model {pooled['auc']:.4f}" if "auc" in pooled else "n/a"
    elif mode == "secureboost":
        size = f"{m.get('trees')} trees"
        ref = f"pooled GBDT {_c(m, 'gbdt_joint')}, bank only {_c(m, 'gbdt_bank_only')}"
    elif mode == "scorecard":
        kept = len(m.get("bank_columns_kept", [])) + len(m.get("centre_columns_kept", []))
        size = f"{m.get('epochs')} LR epochs on {kept} WOE columns"
        ref = (
            f"pooled scorecard, same bins {_c(m, 'same_bins_sklearn_lr')}; "
            f"optbinning scorecard {_c(m, 'optbinning_scorecard')}"
        )
    else:
        planned = tomllib.loads((ROOT / "configs" / f"{name}.toml").read_text()).get("lr", {}).get("epochs")
        stopped = planned is not None and m.get("epochs") is not None and m["epochs"] < planned
        size = f"{m.get('epochs')} epochs" + (f" (early stopping; {planned} planned)" if stopped else "")
        ref = f"pooled LR {_c(m, 'lr_joint')}, bank only {_c(m, 'lr_bank_only')}"
    auc = f"**{m['auc']:.4f}**" if "auc" in m else "n/a"
    ks = f"{m['ks']:.4f}" if "ks" in m else "n/a"
    return f"| `configs/{name}.toml` | {size} | {auc} | {ks} | {ref} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "results")
    ap.add_argument("--reuse", action="store_true", help="read runs already in --out instead of re-running them")
    ap.add_argument("--only", default="", help="comma-separated config names (default: every shipped one)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SHIPPED)
    unknown = sorted(set(names) - set(SHIPPED))
    if unknown:
        ap.error(f"not a shipped training config: {unknown} (one of {list(SHIPPED)})")
    results = {n: run(n, args.out, args.reuse) for n in names}
    print("Quality rows of README 'Results at a glance':\n")
    for h in HEADLINES:
        if h.config in results:
            print(headline_row(h, results[h.config]))
    print("\nWhat each shipped config gives (test set):\n")
    print("| config | trained | test AUC | KS | reference on the same rows |")
    print("|---|---|---|---|---|")
    for n in names:
        print(config_row(n, results[n]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
