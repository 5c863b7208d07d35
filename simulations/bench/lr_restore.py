"""CPU seconds of one hetero-LR restore (``from_state``) at a given row count, with and without frozen data.

    PYTHONPATH=$PWD .venv/bin/python simulations/bench/lr_restore.py --rows 1000000 [--repeat 5]

Every relay step rebuilds each party from its state; with plain (writeable) arrays the
constructor checks, fixed-point encodes and digests every row each time; with arrays from
:func:`protocols.hetero_lr.memo.frozen` (made once when the node loads its data) the restore reuses
them. Data: standard normal, 12 bank and 12 centre columns (shape only matters).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.hetero_lr import BankLR, CentreLR, HeteroLRConfig  # noqa: E402
from protocols.hetero_lr.memo import frozen  # noqa: E402


def measure(rows: int, repeat: int, freeze: bool) -> dict:
    rng = np.random.default_rng(0)
    Xb, Xc = rng.normal(size=(rows, 12)), rng.normal(size=(rows, 12))
    y = (rng.random(rows) < 0.1).astype(np.int8)
    if freeze:
        Xb, Xc, y = frozen(Xb), frozen(Xc), frozen(y)
    cfg = HeteroLRConfig(batch_size=4096, key_bits=1024, insecure_test_key=True)
    bs = BankLR("bank", "centre", Xb, y, cfg).to_state()
    cs = CentreLR("centre", "bank", Xc, cfg).to_state()
    out: dict = {"rows": rows, "frozen": freeze}
    for role, make in (
        ("bank", lambda: BankLR.from_state(bs, Xb, y)),
        ("centre", lambda: CentreLR.from_state(cs, Xc)),
    ):
        c0 = time.process_time()
        for _ in range(repeat):
            make()
        out[f"{role}_restore_cpu_s"] = round((time.process_time() - c0) / repeat, 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for freeze in (False, True):
        print(json.dumps(measure(args.rows, args.repeat, freeze)))


if __name__ == "__main__":
    main()
