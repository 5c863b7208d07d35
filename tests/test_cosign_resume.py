"""A resumed run keeps its transparency log: the coordinator rebuilds the Merkle mirror from the
ledger file, each node says in its hello which head it holds (read from its own node log, since a
resumed segment's Flower state starts empty) and checks consistency from it; the resumed run
directory verifies with heads co-signed in both segments."""

from __future__ import annotations

from test_resume import interrupted, resumed, scenario  # noqa: F401 - the resume suite's fixtures

from fedcredit.ledger import read_records
from fedcredit.ledger.rundir import verify_run_dir


def test_resumed_run_dir_verifies_with_heads_cosigned_across_segments(resumed):  # noqa: F811
    resumed, status = resumed
    assert status["status"] == "completed", status
    rep = verify_run_dir(resumed)
    assert rep.ok and rep.key_source == "co-signed", rep.errors
    ledger = read_records(resumed / "ledger.sqlite")
    resumed_at = next(r.seq for r in ledger if r.kind == "run_resumed")
    for node in ("bank", "credit_centre"):
        recs = read_records(resumed / "nodes" / node / "egress.sqlite")
        sizes = [r.payload["head"]["size"] for r in recs if r.kind == "cosigned"]
        assert sizes == sorted(sizes) and sizes[0] < resumed_at < sizes[-1], sizes  # both segments
        assert recs[-1].kind == "egress_end"
