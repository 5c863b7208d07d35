"""Cost of co-signed tree heads in a run (issue 15: at most 5 % of `make demo`).

Replays, on a finished run's own ledger and node logs, exactly what the run did at each phase
boundary: the coordinator mirrors each record into the Merkle log and signs one head with each
party's proofs (:class:`fedcredit.ledger.cosign.HeadIssuer`); each party reads its node log and
checks and co-signs the head (:func:`fedcredit.ledger.cosign.witness`). Heads are announced at the
sizes the nodes actually co-signed (from their ``cosigned`` records). Reports the total seconds,
the run's wall time (``metrics.json``) and the share; the final head's extra round trip is not
included (in-process/simulation it is milliseconds; in deployment one Flower round trip).
Also times ``verify_run_dir``. The last line printed is JSON.

    .venv/bin/python simulations/bench/cosign.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fedcredit.ledger import load_private_key, read_records
from fedcredit.ledger.cosign import HeadIssuer, sent_by_step, witness
from fedcredit.ledger.rundir import verify_run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    a = ap.parse_args()
    d: Path = a.run_dir
    ledger = read_records(d / "ledger.sqlite")
    key = load_private_key(d / "coordinator_key.pem")
    parties = sorted(p.parent.name for p in (d / "nodes").glob("*/egress.sqlite"))
    logs = {p: read_records(d / "nodes" / p / "egress.sqlite") for p in parties}
    node_keys = {p: load_private_key(d / "keys" / p / "egress.key") for p in parties}
    sizes = [int(r.payload["head"]["size"]) for r in logs[parties[0]] if r.kind == "cosigned"]
    t0 = time.perf_counter()
    issuer = HeadIssuer(ledger[0].run_id, key)
    held = dict.fromkeys(parties)
    n = 0
    for size in sizes:
        while n < size:
            issuer.add(ledger[n])
            n += 1
        ann = issuer.announce(parties)
        for p in parties:
            recs = read_records(d / "nodes" / p / "egress.sqlite")  # the node reads its log, as in the run
            ends = [i for i, r in enumerate(recs) if r.kind == "cosigned"]
            k = sizes.index(size)
            lo = ends[k - 1] + 1 if k else 0
            own = sent_by_step(recs[lo : ends[k]], cosigned_kind="")  # what it sent since its last head
            held[p], _ = witness(
                ann[p], party=p, key=node_keys[p], coordinator=key.public_key(), last_head=held[p], own_sent=own
            )
    cosign_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = verify_run_dir(d)
    verify_s = time.perf_counter() - t1
    metrics = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").exists() else {}
    run_s = float(metrics.get("seconds", 0) or 0)
    out = {
        "records": len(ledger),
        "heads": len(sizes),
        "parties": len(parties),
        "cosign_s": round(cosign_s, 4),
        "run_s": run_s,
        "share_pct": round(100 * cosign_s / run_s, 3) if run_s else None,
        "verify_run_dir_s": round(verify_s, 3),
        "verify_ok": rep.ok,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
