"""Benchmark: seconds per SecureBoost tree vs the same tree grown in plaintext.

Default workload (the issue's target): all 30,000 rows of the bundled default_credit data,
bank = guest with 13 features and labels, credit centre = host with 10 features, depth 5,
32 bins, 2048-bit Paillier key, both parties in one process driven by ``run_local`` exactly
as the coordinator drives them (every step round-trips both parties through
``to_state``/``from_state`` unless ``--no-restart``). The plaintext reference
(:class:`protocols.gbdt.plain.PlainGBDT`) grows the same trees; the script checks that they
are identical. Target: <= 10 s per tree on 2 cores.

    .venv/bin/python simulations/bench/secureboost.py --trees 3
    .venv/bin/python simulations/bench/secureboost.py --quick    # seconds: a smoke test

The last line is JSON with ``tree_seconds``, ``plaintext_tree_seconds`` and ``ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.common.party import run_local  # noqa: E402
from protocols.gbdt.plain import OWNER_HOST, PlainGBDT  # noqa: E402
from protocols.secureboost import SecureBoostConfig, SecureBoostGuest, SecureBoostHost  # noqa: E402
from simulations.bench._progress import BenchProgress, add_progress_flag  # noqa: E402


def load(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bank features, centre features aligned to the bank's rows, labels)."""
    from fedcredit.data.default_credit import load_vertical

    bank, centre = load_vertical("all")
    pos = {u: i for i, u in enumerate(centre.ids)}
    idx = np.array([pos[u] for u in bank.ids])
    Xg, Xh, y = bank.features, centre.features[idx], np.asarray(bank.labels)
    if rows < len(y):
        Xg, Xh, y = Xg[:rows], Xh[:rows], y[:rows]
    return Xg, Xh, y


def identical(guest, host, ref: PlainGBDT) -> bool:
    gm, hm = guest.model, host.model
    if len(gm.trees) != len(ref.trees):
        return False
    for a, b in zip(gm.trees, ref.trees):
        feats, thr = a.feature.copy(), a.threshold.copy()
        for k in np.flatnonzero(a.owner == OWNER_HOST):
            feats[k], thr[k] = hm.lookup(int(a.split_id[k]))
        if not (
            np.array_equal(a.owner, b.owner)
            and np.array_equal(feats, b.feature)
            and np.array_equal(thr, b.threshold, equal_nan=True)
            and np.array_equal(a.value, b.value)
        ):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--trees", type=int, default=3)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=0, help="0 = all cores")
    ap.add_argument("--no-restart", action="store_true", help="keep party objects in memory between steps")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 rows, 1 tree, depth 3, 1024-bit test key, 1 worker (overrides those options)",
    )
    add_progress_flag(ap)
    args = ap.parse_args()
    if args.quick:
        args.rows, args.trees, args.depth, args.key_bits, args.workers = 2_000, 1, 3, 1024, 1
    with BenchProgress("secureboost", phases=4, no_progress=args.no_progress) as prog:
        _bench(args, prog)


def _bench(args: argparse.Namespace, prog: BenchProgress) -> None:
    prog.phase("loading data")
    Xg, Xh, y = load(args.rows)
    cfg = SecureBoostConfig(
        n_trees=args.trees,
        max_depth=args.depth,
        max_bins=args.bins,
        key_bits=args.key_bits,
        insecure_test_key=args.key_bits < 2048,
        n_workers=args.workers,
    )
    prog.phase("plaintext GBDT reference")
    ref = PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(np.hstack([Xg, Xh]), y, n_guest_features=Xg.shape[1])
    plain = float(np.mean(ref.tree_seconds))

    parties = {
        "bank": SecureBoostGuest("bank", "centre", Xg, y, cfg),
        "centre": SecureBoostHost("centre", "bank", Xh, cfg),
    }
    state_seconds = [0.0]

    def restart(name: str, party):
        watch(name, party)
        t = time.perf_counter()
        if name == "bank":
            p = SecureBoostGuest.from_state(party.to_state(), Xg, y)
        else:
            p = SecureBoostHost.from_state(party.to_state(), Xh)
        state_seconds[0] += time.perf_counter() - t
        return p

    prog.phase(f"federated training, {args.trees} trees of depth {args.depth}")
    with prog.steps("trees", total=args.trees) as tick:

        def watch(name: str, party):  # trees the bank has finished, before each of its steps
            if name == "bank":
                tick(len(party.history))
            return party

        t0, c0 = time.perf_counter(), time.process_time()
        transcript = run_local(parties, restart=watch if args.no_restart else restart)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    prog.phase("checking against the plaintext trees")
    guest, host = parties["bank"], parties["centre"]
    hist = guest.history
    hist_host = host.history
    per_tree = total / args.trees
    for hg, hh in zip(hist, hist_host):
        print(
            f"tree {hg['tree']}: guest {hg['guest_seconds']:.2f} s (encrypt {hg['encrypt_seconds']:.2f}, "
            f"decrypt {hg['decrypt_seconds']:.2f}), host {hh['host_seconds']:.2f} s (histograms "
            f"{hh['hist_seconds']:.2f}, packing {hh['pack_seconds']:.2f}), steps {hg['steps']}, "
            f"host splits {hg['host_splits']}/{hg['n_nodes']} nodes, decryptions {hg['decryptions']}, "
            f"candidates {hg['host_candidates']}, host rows histogrammed {hh['hist_rows']}"
        )
    result = {
        "tree_seconds": round(per_tree, 3),
        "plaintext_tree_seconds": round(plain, 4),
        "ratio": round(per_tree / plain, 1),
        "rows": int(len(y)),
        "depth": args.depth,
        "bins": args.bins,
        "key_bits": args.key_bits,
        "trees": args.trees,
        "workers": args.workers or os.cpu_count(),
        "messages_per_tree": round(sum(len(s) for s in transcript.steps) / args.trees, 1),
        "steps_per_tree": round(len(transcript.steps) / args.trees, 1),
        "decryptions_per_tree": round(float(np.mean([h["decryptions"] for h in hist])), 1),
        "state_roundtrip_seconds_per_tree": round(state_seconds[0] / args.trees, 3),
        # CPU of this process only (worker processes excluded): with --workers 1 it is the whole
        # protocol's CPU work per tree, a figure much less sensitive to a busy machine than wall time
        "main_process_cpu_seconds_per_tree": round(cpu / args.trees, 3),
        "identical_to_plaintext": identical(guest, host, ref),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
