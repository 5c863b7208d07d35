"""SecAgg+ with banks dropping at each stage of a round, and stopping when too few remain.

The Ray run in ``test_horizontal_flower`` drops a bank only at the masked-vector step. Here the
same apps run on the in-process grid (no Ray), and a bank stops answering exactly before one
SecAgg+ stage (key sharing, masked vectors, unmasking) by being put in the grid's ``down`` set as
soon as it has answered the stage before. The aggregate must then be the exact weighted average of
the banks whose vectors count (checked against each bank's plaintext update, saved at the bank),
the dropout must be recorded at that stage, and with fewer than the reconstruction threshold
left the run must stop with an error naming the banks, its ledger still verifying.

Flower's own ``SecAggPlusWorkflow`` failed two of these (a bank silent at key sharing, a bank
offline for good: it listed them as dead at unmask and every survivor failed with ``KeyError``);
:mod:`parties.horizontal.secagg_workflow` fixes them, and ``simulations/canaries.py`` re-plants
Flower's behaviour to show these tests catch it.

SecAgg+ stages are told apart by the keys of Flower's ``secaggplus_configs`` record: ``sample_num``
(setup), one key per node id (share keys), ``ctxts`` (collect masked vectors), ``active_nids``
(unmask).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import test_horizontal_flower as hf
from flwr.app import Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedcredit.horizontal.aggregation import weighted_average
from fedcredit.ledger import read_records
from fedcredit.ledger.rundir import verify_run_dir
from parties.common.grid import InProcessGrid, server_context
from parties.in_process import run_scenario_in_process
from parties.sweeps import DirTap, _Sweep

pytestmark = pytest.mark.timeout(300)
BANKS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"]
FIRST_NODE = 1000  # the grid's first node id: partition i is node 1000 + i, party BANKS[i]
ORDER = ["setup", "share_keys", "collect", "unmask"]


def _stage(req) -> str | None:
    configs = req.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is None:
        return None
    keys = set(configs.keys())
    if "sample_num" in keys:
        return "setup"
    if "ctxts" in keys:
        return "collect"
    if "active_nids" in keys:
        return "unmask"
    return "share_keys"


def _run(tmp_path: Path, drops: dict[str, str], rounds: int = 2, revive: bool = True):
    """A 5-bank SecAgg+ run in which each bank in ``drops`` stops answering just before the given
    stage of round 1 (and, with ``revive``, answers again from round 2); returns (result, taps,
    scenario name)."""
    assert "setup" not in drops.values(), "a round-1 setup dropout is the offline-for-good case (round 2)"
    name = "drop-" + "-".join(f"{p[-1]}{s}" for p, s in sorted(drops.items()))
    sc = hf._variant(
        "horizontal-secagg",
        name,
        horizontal={"rounds": rounds, "max_rows_per_bank": 800, "baseline": "false"},
        replace={"[horizontal]": hf.FIVE + "\n[horizontal]"},
    )
    taps = DirTap(str(tmp_path))
    sweep = _Sweep([sc], tmp_path / "out", capture=True)
    grid = InProcessGrid(sweep.client_app(taps), len(sc.parties))
    previous = {FIRST_NODE + BANKS.index(p): ORDER[ORDER.index(st) - 1] for p, st in drops.items()}
    answered: dict[int, list[str]] = {v: [] for v in previous}

    def tap(nid, req, rep):
        st = _stage(req)
        if req.metadata.group_id != "1":  # round 1 only: the victims are back for the next round
            if revive:
                grid.down.difference_update(previous)
            return
        if nid in previous and st is not None and rep is not None:
            answered[nid].append(st)
            if st == previous[nid]:  # answered the stage before: silent from now on
                grid.down.add(nid)

    grid.tap = tap
    sweep.coordinate(grid, server_context())
    (result,) = sweep.results
    assert all(a and a[-1] == previous[v] for v, a in answered.items()), f"precondition: victims answered {answered}"
    return result, taps, name


def _drops(result) -> dict[str, str]:
    return {e["party"]: e["step"] for e in result.recorder.events_of("dropout")}


def _expected(taps: DirTap, name: str, parties: list[str], rnd: int = 1) -> list[np.ndarray]:
    ups = [taps.load(name, p, rnd) for p in parties]
    return weighted_average([a for _, a in ups], [n for n, _ in ups])


def _exact(got: list[np.ndarray], want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(np.max(np.abs(g - e)) < 1e-5 for g, e in zip(got, want, strict=True))


def test_bank_dropping_during_key_sharing_is_left_out_exactly(tmp_path):
    """It handed out no shares, so nobody masked with it: it is neither active nor dead at unmask."""
    r, taps, name = _run(tmp_path, {"bank_b": "share_keys"})
    assert not r.error, r.error
    assert _drops(r) == {"bank_b": "horizontal.secagg.share_keys"}
    hist = {h["round"]: h["contributors"] for h in r.metrics["history"]}
    assert hist == {1: 4, 2: 5}
    survivors = [b for b in BANKS if b != "bank_b"]
    assert _exact(hf._global_sent(r, 2), _expected(taps, name, survivors))


def test_bank_dropping_during_unmasking_still_counts_and_its_mask_is_removed(tmp_path):
    """Its masked vector arrived: the survivors reveal its self-mask, so all five updates count."""
    r, taps, name = _run(tmp_path, {"bank_c": "unmask"})
    assert not r.error, r.error
    assert _drops(r) == {"bank_c": "horizontal.secagg.unmask"}
    assert {h["round"]: h["contributors"] for h in r.metrics["history"]}[1] == 5
    assert _exact(hf._global_sent(r, 2), _expected(taps, name, BANKS))


def test_drops_at_key_sharing_and_at_masked_vectors_in_one_round_leave_the_exact_average(tmp_path):
    """bank_d's shares went out, its vector did not: its pairwise masks are rebuilt, but only with
    banks that masked with it -- not with bank_b, which dropped before handing out shares (a mask
    added for that pair would be in nobody's vector and ruin the aggregate)."""
    r, taps, name = _run(tmp_path, {"bank_b": "share_keys", "bank_d": "collect"})
    assert not r.error, r.error
    assert _drops(r) == {"bank_b": "horizontal.secagg.share_keys", "bank_d": "horizontal.secagg.collect_masked_vectors"}
    assert {h["round"]: h["contributors"] for h in r.metrics["history"]}[1] == 3
    assert _exact(hf._global_sent(r, 2), _expected(taps, name, ["bank_a", "bank_c", "bank_e"]))


@pytest.mark.parametrize("stage", ["share_keys", "collect", "unmask"])
def test_too_few_banks_left_to_reconstruct_stops_the_run_naming_the_threshold(tmp_path, stage):
    """Three of five banks go silent before ``stage``: two are left, below the threshold of 3."""
    r, _, _ = _run(tmp_path, {b: stage for b in ["bank_a", "bank_b", "bank_c"]}, rounds=1)
    flower_stage = "collect_masked_vectors" if stage == "collect" else stage
    assert r.metrics is None and "too few banks" in r.error and "threshold 3" in r.error, r.error
    assert f"round 1: SecAgg+ stopped at {flower_stage}" in r.error, r.error
    assert "2 answered (bank_d, bank_e)" in r.error, r.error
    assert f"dropped: bank_a at {flower_stage}; bank_b at {flower_stage}; bank_c at {flower_stage}" in r.error
    assert _drops(r) == {b: f"horizontal.secagg.{flower_stage}" for b in ["bank_a", "bank_b", "bank_c"]}


def test_bank_offline_for_good_leaves_later_rounds_with_the_others(tmp_path):
    """Silent from round 1's unmask on: round 2 goes on without it (it is silent at setup there)."""
    r, taps, name = _run(tmp_path, {"bank_c": "unmask"}, rounds=3, revive=False)
    assert not r.error, r.error
    assert {h["round"]: h["contributors"] for h in r.metrics["history"]} == {1: 5, 2: 4, 3: 4}
    steps = [(e["round"], e["step"]) for e in r.recorder.events_of("dropout") if e["party"] == "bank_c"]
    assert steps[:2] == [(1, "horizontal.secagg.unmask"), (2, "horizontal.secagg.setup")], steps
    survivors = [b for b in BANKS if b != "bank_c"]
    assert _exact(hf._global_sent(r, 3), _expected(taps, name, survivors, rnd=2))


def test_stopped_round_fails_the_production_run_naming_the_banks_and_its_ledger_verifies(tmp_path):
    """Through the production coordinator (ledger, node egress logs, co-signed heads): three banks
    are unreachable during round 1's unmask (back afterwards, as after a network partition), so
    the run stops; status.json names the banks and the stopped run's directory still verifies."""
    sc = hf._variant(
        "horizontal-secagg",
        "drop-too-few-ledger",
        horizontal={"rounds": 2, "max_rows_per_bank": 800, "baseline": "false"},
        replace={"[horizontal]": hf.FIVE + "\n[horizontal]"},
    )
    victims = {FIRST_NODE + BANKS.index(b) for b in ["bank_a", "bank_b", "bank_c"]}
    unreachable: list[int] = []

    def prepare(grid: InProcessGrid) -> None:
        inner = grid.send_and_receive

        def send_and_receive(messages, *, timeout=None):
            msgs = list(messages)
            cut = any(m.metadata.group_id == "1" and _stage(m) == "unmask" for m in msgs)
            if cut:
                grid.down.update(victims)
                unreachable.extend(sorted(victims))
            try:
                return inner(msgs, timeout=timeout)
            finally:
                grid.down.difference_update(victims)

        grid.send_and_receive = send_and_receive

    status = run_scenario_in_process(sc, tmp_path / "run", prepare_grid=prepare)
    assert unreachable == sorted(victims), "precondition: the unmask stage of round 1 was reached"
    assert status["status"] == "failed", status
    err = status["error"]
    assert "round 1: SecAgg+ stopped at unmask" in err and "threshold 3" in err, err
    assert "dropped: bank_a at unmask; bank_b at unmask; bank_c at unmask" in err, err
    assert json.loads((tmp_path / "run" / "status.json").read_text())["error"] == err
    assert not (tmp_path / "run" / "metrics.json").exists()
    rep = verify_run_dir(tmp_path / "run")
    assert rep.ok and rep.key_source == "co-signed", rep.errors[:5]
    records = read_records(tmp_path / "run" / "ledger.sqlite")
    dropouts = [r.payload for r in records if r.kind == "dropout"]
    assert {(d["party"], d["step"]) for d in dropouts} == {
        (b, "horizontal.secagg.unmask") for b in ["bank_a", "bank_b", "bank_c"]
    }, dropouts


def test_flowers_mod_alone_reveals_both_shares_of_a_node_listed_active_and_dead():
    """Positive control for the bank-side guard below: Flower's ``secaggplus_mod`` does not check
    the lists, so one answer would carry a share of node 7's self-mask seed and of its mask key."""
    from flwr.app import ConfigRecord
    from flwr.client.mod.secure_aggregation.secaggplus_mod import SecAggPlusState, _unmask

    st = SecAggPlusState(threshold=2, rd_seed_share_dict={7: b"seed-share"}, sk1_share_dict={7: b"key-share"})
    out = _unmask(st, ConfigRecord({Key.ACTIVE_NODE_ID_LIST: [7, 7], Key.DEAD_NODE_ID_LIST: [7]}))
    assert out[Key.SHARE_LIST] == [b"seed-share", b"seed-share", b"key-share"]


def test_bank_refuses_an_unmask_request_naming_a_node_both_active_and_dead(tmp_path):
    """A coordinator adds one active bank to every unmask request's dead list (to collect both the
    self-mask and the pairwise-mask shares of that bank): every bank refuses before Flower's mod
    answers, no share leaves a bank, and the run fails naming a bank and the rule."""
    from flwr.app import ConfigRecord

    sc = hf._variant(
        "horizontal-secagg",
        "unmask-both-lists",
        horizontal={"rounds": 1, "max_rows_per_bank": 800, "baseline": "false"},
        replace={"[horizontal]": hf.FIVE + "\n[horizontal]"},
    )
    fired: list[int] = []
    unmask_replies: list[Message] = []

    def prepare(grid: InProcessGrid) -> None:
        push = grid.push_messages

        def tampered(messages):
            out = []
            for m in messages:
                if _stage(m) == "unmask":
                    cfg = dict(m.content.config_records[RECORD_KEY_CONFIGS])
                    active = list(cfg[Key.ACTIVE_NODE_ID_LIST])
                    cfg[Key.DEAD_NODE_ID_LIST] = list(cfg[Key.DEAD_NODE_ID_LIST]) + active[:1]
                    m.content.config_records[RECORD_KEY_CONFIGS] = ConfigRecord(cfg)
                    fired.append(m.metadata.dst_node_id)
                out.append(m)
            return push(out)

        grid.push_messages = tampered

    def tap(nid, req, rep):
        if _stage(req) == "unmask":
            unmask_replies.append(rep)

    status = run_scenario_in_process(sc, tmp_path / "run", prepare_grid=prepare, tap=tap)
    assert len(fired) == 5 and len(unmask_replies) == 5, "precondition: every bank got a tampered unmask request"
    assert all(r.has_error() and "PolicyViolation" in r.error.reason for r in unmask_replies)
    assert not any(RECORD_KEY_CONFIGS in r.content.config_records for r in unmask_replies if not r.has_error())
    assert status["status"] == "failed" and status["party"] in BANKS and status["step"] == "secagg+ unmask", status
    assert "listed both as active and as dead" in status["error"], status
    rep = verify_run_dir(tmp_path / "run")  # the stopped run's directory verifies, co-signed heads included
    assert rep.ok and rep.key_source == "co-signed", rep.errors[:5]


def test_unmask_policy_accepts_disjoint_lists_and_names_the_bank_and_nodes_otherwise():
    from parties.horizontal.policy import PolicyViolation, RoundPolicy

    pol = RoundPolicy("bank_b", 5, 3, "secagg+", 5, 3)
    pol.check_secagg_unmask([1, 2, 3], [4])  # an honest request: no error
    with pytest.raises(PolicyViolation, match=r"bank 'bank_b' at secagg\+ unmask: node\(s\) \[2\] listed both"):
        pol.check_secagg_unmask([1, 2, 3], [2])
    with pytest.raises(PolicyViolation, match=r"node\(s\) \[3\] listed more than once"):
        pol.check_secagg_unmask([1, 3, 3], [4])
