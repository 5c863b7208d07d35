"""Benchmark federated WOE/IV binning of the credit centre's columns (issue 17).

    .venv/bin/python simulations/bench/binning.py --rows 30000 --cols 10 [--key-bits 2048]

Synthetic data: ``cols`` centre columns (30 % missing, two of them categorical) and labels at
the bank. Times the protocol (bank encrypts labels, centre sums them per fine bin, bank decrypts
and merges, centre applies the WOE tables) through the wire encoding with ``run_local``, and
checks every decrypted fine-bin event count against a plaintext ``np.bincount``. The key pair
is generated before the clock starts (reported separately: a bank reuses its key). The last
line of output is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from protocols.binning.bank import BinningBank
from protocols.binning.centre import BinningCentre
from protocols.binning.config import BinningConfig
from protocols.common.party import run_local
from protocols.paillier import generate_keypair


def make_data(rows: int, cols: int, seed: int) -> tuple[np.ndarray, list[str], dict[str, int], np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols))
    logit = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] - 1.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    categorical: dict[str, int] = {}
    names = [f"c{j}" for j in range(cols)]
    for j in range(min(2, cols)):  # two categorical columns: 5 and 12 levels
        k = (5, 12)[j]
        X[:, cols - 1 - j] = rng.integers(0, k, size=rows)
        categorical[names[cols - 1 - j]] = k
    X[rng.random(X.shape) < 0.3] = np.nan
    return X, names, categorical, y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--cols", type=int, default=10)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    X, names, categorical, y = make_data(args.rows, args.cols, args.seed)
    cfg = BinningConfig(key_bits=args.key_bits, insecure_test_key=args.key_bits < 2048)
    t0 = time.perf_counter()
    _, sk = generate_keypair(args.key_bits, insecure_test_key=cfg.insecure_test_key)
    sk.precompute()
    keygen = time.perf_counter() - t0
    t0 = time.perf_counter()
    bank = BinningBank("bank", "centre", np.zeros((args.rows, 0)), [], y, cfg, private_key=sk)
    centre = BinningCentre("centre", "bank", X, names, cfg, categorical=categorical)
    transcript = run_local({"bank": bank, "centre": centre})
    seconds = time.perf_counter() - t0
    correct = True
    for j, col in enumerate(names):
        codes = centre.codes[:, j]
        nb = centre.bins[j].n_bins
        w = bank.centre[col]
        correct &= bool(np.array_equal(w.fine_events, np.bincount(codes, weights=y, minlength=nb).astype(np.int64)))
        correct &= bool(np.array_equal(w.fine_events + w.fine_nonevents, np.bincount(codes, minlength=nb)))
    out = {
        "bench": "binning",
        "rows": args.rows,
        "centre_columns": args.cols,
        "key_bits": args.key_bits,
        "seconds": round(seconds, 2),
        "keygen_seconds": round(keygen, 2),
        "fine_bins": int(sum(cb.n_bins for cb in centre.bins)),
        "kept_centre_columns": centre.kept,
        "wire_bytes": sum(e.size for step in transcript.steps for e in step),
        "correct": correct,
        "cpu_count": os.cpu_count(),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    print(f"federated binning of {args.rows} rows x {args.cols} centre columns: {seconds:.2f} s, correct={correct}")
    print(json.dumps(out))
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
