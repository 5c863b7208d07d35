"""Sweep horizontal joint modelling over number of banks, non-IID skew and aggregation mode.

Every configuration is a scenario on the bundled default_credit data (training rows split
across K banks, ``skew`` making portfolios non-IID); all of them run in ONE Flower simulation
(one Ray start) -- or, with ``--engine inprocess``, on the in-process grid. Prints a table (final
holdout AUC/KS vs centralised pooled training of the same model) and saves
``auc_vs_rounds.png`` (one panel per (banks, skew), one line per mode) plus ``results.json``.

Under CKKS the coordinator normally sees only the final model; for the curves the sweep sets
``release_each_round = true`` so a bank also releases each round's aggregate (the same view
SecAgg+ gives the coordinator).

    .venv/bin/python simulations/horizontal_sweep.py --banks 3 10 50 --skew 0 0.8 \\
        --modes plain secagg+ ckks --rounds 10 --out runs/sweep
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fedcredit import config  # noqa: E402
from fedcredit.config.horizontal import HorizontalSettings  # noqa: E402

MODES = ("plain", "secagg+", "ckks")


def bank_names(k: int) -> list[str]:
    return [f"bank_{i:02d}" for i in range(k)]


def scenario_text(
    k: int,
    skew: float,
    mode: str,
    *,
    rounds: int,
    model: str,
    mu: float,
    lr: float,
    local_epochs: int,
    max_rows: int,
    seed: int,
) -> str:
    name = f"sweep-k{k}-s{skew:g}-{mode.replace('+', '')}"
    parties = "".join(f'[parties.{b}]\nrole = "bank"\ndata = "default_credit"\n\n' for b in bank_names(k))
    return (
        f'[run]\nname = "{name}"\nmode = "horizontal"\nseed = {seed}\n\n{parties}'
        f'[horizontal]\naggregation = "{mode}"\nrounds = {rounds}\nlocal_epochs = {local_epochs}\n'
        f'batch_size = 256\nlr = {lr}\nmodel = "{model}"\nfedprox_mu = {mu}\nskew = {skew}\n'
        f"max_rows_per_bank = {max_rows}\nrelease_each_round = true\ntimeout = 600\n"
    )


def build(args: argparse.Namespace) -> list[config.Scenario]:
    out = []
    for k in args.banks:
        if k < 3 and "secagg+" in args.modes:
            raise SystemExit("secagg+ needs at least 3 banks")
        for skew in args.skew:
            for mode in args.modes:
                text = scenario_text(
                    k,
                    skew,
                    mode,
                    rounds=args.rounds,
                    model=args.model,
                    mu=args.mu,
                    lr=args.lr,
                    local_epochs=args.local_epochs,
                    max_rows=args.max_rows,
                    seed=args.seed,
                )
                out.append(config.loads(text))
    return out


def table(rows: list[dict]) -> str:
    head = f"{'banks':>5} {'skew':>5} {'mode':>8} {'AUC':>7} {'KS':>7} {'pooled':>7} {'gap':>7} {'seconds':>8}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(
                f"{r['banks']:>5} {r['skew']:>5g} {r['mode']:>8} {'-':>7} {'-':>7} {'-':>7} {'-':>7} "
                f"{'-':>8}  FAILED: {r['error'][:60]}"
            )
            continue
        pooled = r.get("pooled_auc")
        gap = f"{r['auc'] - pooled:+.4f}" if pooled is not None else "-"
        lines.append(
            f"{r['banks']:>5} {r['skew']:>5g} {r['mode']:>8} {r['auc']:>7.4f} {r['ks']:>7.4f} "
            f"{pooled if pooled is not None else float('nan'):>7.4f} {gap:>7} {r['seconds']:>8.1f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """One panel per (banks, skew) -- banks across, skew down -- one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    banks = sorted({r["banks"] for r in rows})
    skews = sorted({r["skew"] for r in rows})
    style = {"plain": ("-", "o"), "secagg+": ("--", "s"), "ckks": (":", "^")}  # modes overlap when equal
    fig, axes = plt.subplots(
        len(skews), len(banks), figsize=(4.2 * len(banks), 3.2 * len(skews)), squeeze=False, sharey=True
    )
    for i, skew in enumerate(skews):
        for j, k in enumerate(banks):
            ax = axes[i][j]
            for r in rows:
                if (r["banks"], r["skew"]) != (k, skew) or r.get("error"):
                    continue
                pts = [(h["round"], h["auc"]) for h in r["history"] if "auc" in h]
                ls, mk = style.get(r["mode"], ("-", "."))
                if pts:
                    ax.plot(*zip(*pts), ls=ls, marker=mk, ms=4, mfc="none", label=r["mode"])
                if r.get("pooled_auc") is not None:
                    ax.axhline(r["pooled_auc"], color="grey", ls=":", lw=1)
            ax.set_title(f"{k} banks, skew {skew:g}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if i == len(skews) - 1:
                ax.set_xlabel("round")
        axes[i][0].set_ylabel("holdout AUC (dotted: pooled)")
    axes[0][-1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--banks", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--skew", type=float, nargs="+", default=[0.0, 0.8])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--mu", type=float, default=0.0, help="FedProx proximal strength (0 = FedAvg)")
    ap.add_argument("--model", default="lr", choices=("lr", "mlp"))
    ap.add_argument("--max-rows", type=int, default=0, help="rows per bank (0 = all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--engine", default="ray", choices=("ray", "inprocess"))
    ap.add_argument("--out", type=Path, default=Path("runs/horizontal-sweep"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from parties.sweeps import run_horizontal_sweep_in_process, run_horizontal_sweep_on_ray

    scenarios = build(args)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runner = run_horizontal_sweep_on_ray if args.engine == "ray" else run_horizontal_sweep_in_process
    results = runner(scenarios, args.out / "runs")
    rows = []
    for res in results:
        s = res.scenario.settings(HorizontalSettings)
        row = {
            "scenario": res.scenario.name,
            "banks": len(res.scenario.parties),
            "skew": s.skew,
            "mode": s.aggregation,
            "error": res.error,
        }
        if res.metrics:
            m = res.metrics
            row.update(
                auc=m["auc"],
                ks=m["ks"],
                seconds=m["seconds"],
                history=m["history"],
                pooled_auc=m.get("centralised", {}).get("pooled_same_model", {}).get("auc"),
            )
        rows.append(row)
    print(table(rows))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2, default=float))
    plot(rows, args.out / "auc_vs_rounds.png")
    print(
        f"\n{len(rows)} configurations in {time.time() - t0:.0f} s ({args.engine}); "
        f"plot: {args.out / 'auc_vs_rounds.png'}, data: {args.out / 'results.json'}"
    )
    return rows


if __name__ == "__main__":
    main()
