"""Platform simulation: one credit centre of N firms serving K banks, each training its own model.

    .venv/bin/python simulations/platform.py --firms 4000000 --banks 10   (or credit_platform.py)

1. ``fedcredit data synth``'s generator writes the centre's table and K banks' books (most of a
   bank's customers are known to the centre, 5-15 % are not).
2. **Alignment, unbalanced PSI** (:mod:`protocols.psi.unbalanced`): the centre prepares its
   table once for the key period; each bank gets its sealed cache and runs one online PSI.
   Reported per bank: online seconds, the centre's CPU seconds for that bank, bytes.
3. **Training through one centre node**: every bank's vertical hetero-LR run goes through one
   :class:`parties.common.centre_host.CentreHost` (``--concurrent`` runs at once, the rest
   queued), on the firms its PSI found. To keep a 4M-firm platform feasible on 2 cores each
   bank trains on at most ``--max-rows`` of its aligned customers (a seeded sample), with
   modest settings: ``--epochs`` (default 2) and ``--key-bits`` (default 1024, *test-strength*
   keys: the protocol and its messages are the production ones, only the key is short). The
   in-run ``align`` phase re-runs the consent-filtered balanced PSI over those rows.
4. **Bank-only baseline** per bank: logistic regression on the bank's own features, same rows,
   same USCC-hash test split; the joint model must beat it.

Reported per bank: AUC (joint) vs AUC (bank only), wall seconds, the centre's cost for it —
``centre_training_cpu_seconds`` (CPU of the centre's thread answering that run's messages;
``FEDCREDIT_PAILLIER_WORKERS=1`` keeps the Paillier work in that thread) and
``psi_centre_evaluate_seconds`` (wall time of the centre's PSI step for that bank, on the shared
worker pool) — and the bytes the bank sent and received (PSI cache and run, plus every Flower
message to and from its node). The centre's one-off PSI preparation is reported once. The last
line is JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

# (named credit_platform: ``simulations/platform.py``, the command issue 19 names, is a thin entry
# point that must not shadow the standard library's ``platform``; see its docstring)
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FEDCREDIT_PAILLIER_WORKERS", "1")  # centre CPU stays in its threads: measurable

from fedcredit import config  # noqa: E402
from fedcredit.data.loaders import hash_split_mask, load_party_table  # noqa: E402
from fedcredit.data.synth import generate  # noqa: E402
from parties.common.centre_host import CentreHost  # noqa: E402
from parties.common.grid import FIRST_NODE_ID  # noqa: E402
from parties.hosted import submit_run  # noqa: E402
from protocols.psi import open_pool  # noqa: E402
from protocols.psi.unbalanced import PreparedCentre, UnbalancedTimings, run_unbalanced_local  # noqa: E402
from protocols.psi.unbalanced.local import fetch_cache  # noqa: E402


def _message_bytes(msg) -> int:
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())


def _write(table, rows: np.ndarray, path: Path) -> None:
    """``table`` (PartyData) restricted to ``rows``, as a CSV the loaders read back."""
    import pandas as pd

    df = pd.DataFrame(table.features[rows], columns=table.feature_names)
    df.insert(0, "uscc", np.asarray(table.ids, dtype=object)[rows])
    if table.labels is not None:
        df["default_12m"] = np.asarray(table.labels)[rows].astype(int)
    df.to_csv(path, index=False)


def _bank_only_auc(bank_rows_file: Path, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bank = load_party_table(bank_rows_file, "bank")
    test = hash_split_mask(bank.ids, seed)
    y = bank.require_labels()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(bank.features[~test], y[~test])
    return float(roc_auc_score(y[test], model.predict_proba(bank.features[test])[:, 1]))


def _scenario(bank: str, bank_file: Path, centre_file: Path, args: argparse.Namespace) -> config.Scenario:
    return config.loads(f"""
[run]
name = "platform-{bank}"
mode = "vertical-lr"
seed = {args.seed}
[parties.{bank}]
role = "bank"
data = "{bank_file}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre_file}"
[consent]
mode = "demo"  # synthetic firms: generated demo consent tokens (docs/consent.md)
[lr]
epochs = {args.epochs}
batch_size = 4096
learning_rate = 0.5
key_bits = {args.key_bits}
insecure_test_key = {"true" if args.key_bits < 2048 else "false"}
""")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--firms", type=int, default=200_000)
    ap.add_argument("--banks", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/platform"))
    ap.add_argument("--max-rows", type=int, default=20_000, help="aligned rows each bank trains on (sample)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--key-bits", type=int, default=1024)
    ap.add_argument("--concurrent", type=int, default=2, help="runs the centre node executes at once")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="PSI worker processes")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    out = args.out
    data = out / "data"
    report: dict = {"firms": args.firms, "banks": args.banks, "cpu_count": os.cpu_count()}
    t0 = time.perf_counter()
    stats = generate(args.firms, args.banks, data, seed=args.seed, fmt="parquet")
    report["synth_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"synthetic platform: centre {stats.centre_rows} firms, {args.banks} banks, {report['synth_seconds']} s")

    centre = load_party_table(data / "credit_centre.parquet", "credit_centre")
    banks = {b.name: load_party_table(data / f"{b.name}.parquet", "bank") for b in stats.banks}
    pool = open_pool(args.workers) if args.workers > 1 else None
    per_bank: dict[str, dict] = {}
    try:
        t0 = time.perf_counter()
        table = PreparedCentre(centre.ids, period="platform", pool=pool)
        report["psi_prepare_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"centre prepared {table.size} PSI tokens once in {report['psi_prepare_seconds']} s")
        rng = np.random.default_rng(args.seed)
        for name, bank in banks.items():
            tm = UnbalancedTimings()
            cache = fetch_cache(table, name, timings=tm)
            res_c, res_b = run_unbalanced_local(
                table, name, bank.ids, cache, session=f"{name}-run", pool=pool, timings=tm
            )
            n = res_b.size
            pick = np.sort(rng.choice(n, size=min(n, args.max_rows), replace=False))
            d = out / name
            d.mkdir(parents=True, exist_ok=True)
            _write(bank, res_b.rows[pick], d / "bank.csv")
            _write(centre, res_c.rows[pick], d / "centre.csv")
            per_bank[name] = {
                "customers": len(bank.ids),
                "known_to_centre": n,
                "train_rows": int(pick.size),
                "psi_online_seconds": round(tm.online_seconds, 2),
                "psi_centre_evaluate_seconds": round(tm.steps.get("centre_evaluate", 0.0), 2),
                "psi_bytes": tm.online_bytes + tm.cache_bytes,
            }
            print(f"{name}: {len(bank.ids)} customers, {n} known to the centre (PSI online {tm.online_seconds:.1f} s)")
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    host = CentreHost(FIRST_NODE_ID + 1, max_concurrent=args.concurrent)
    bank_bytes = {name: 0 for name in per_bank}
    futures, started = {}, {}
    for name in per_bank:
        d = out / name
        sc = _scenario(name, d / "bank.csv", d / "centre.csv", args)

        def tap(node_id, req, rep, _name=name) -> None:
            if node_id == FIRST_NODE_ID:  # the bank's node (first party of its scenario)
                bank_bytes[_name] += _message_bytes(req) + _message_bytes(rep)

        started[name] = time.perf_counter()
        futures[name] = submit_run(host, name, name, sc, d / "run", keep_slot=True, tap=tap)
    for name, fut in futures.items():
        status = fut.result()
        slot = host.slot(name)
        metrics = (
            json.loads((out / name / "run" / "metrics.json").read_text()) if status["status"] == "completed" else {}
        )
        per_bank[name].update(
            status=status["status"],
            wall_seconds=round(time.perf_counter() - started[name], 1),
            auc_joint=round(metrics.get("auc", float("nan")), 4),
            auc_bank_only=round(_bank_only_auc(out / name / "bank.csv", args.seed), 4),
            centre_training_cpu_seconds=round(slot.cpu_seconds, 2),
            centre_messages=slot.messages,
            bank_bytes=bank_bytes[name] + per_bank[name]["psi_bytes"],
        )
        host.close_run(name)
        r = per_bank[name]
        print(
            f"{name}: AUC joint {r['auc_joint']} vs bank-only {r['auc_bank_only']}, {r['wall_seconds']} s, "
            f"centre {r['centre_training_cpu_seconds']} CPU-s training + {r['psi_centre_evaluate_seconds']} s PSI, {r['bank_bytes'] / 1e6:.1f} MB"
        )
    host.shutdown()
    report["peak_concurrent_runs"] = host.peak_running
    report["per_bank"] = per_bank
    report["all_beat_bank_only"] = all(r["auc_joint"] > r["auc_bank_only"] for r in per_bank.values())
    report["load_avg"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))
    return 0 if report["all_beat_bank_only"] else 1


if __name__ == "__main__":
    sys.exit(main())
