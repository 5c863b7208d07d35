"""Streamed steps (parties.common.exchange): a hetero-LR epoch is one coordinator step whatever its
number of batches (#19), the streamed run trains exactly the relayed run's model and verifies
exchange by exchange, and the hub admits only the invited node of each token.

Attacks by the hub itself (alter, drop, replay inside a streamed epoch) are cases of the attack
suite (simulations/attack_cases/coordinator.py, ``coordinator/stream-*``), run by
tests/test_attacks_coordinator.py.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ledger_support import verified

from fedcredit import config
from fedcredit.ledger import read_records
from parties.common.exchange import (
    ExchangeClient,
    ExchangeError,
    ExchangeHub,
    StreamInvite,
    stream_party,
)
from parties.in_process import run_scenario_in_process
from protocols.common import wire
from protocols.common.party import Envelope
from protocols.common.signing import SignedEnvelope
from simulations.attack_cases.coordinator import scenario


def _with_batch(work: Path, batch: int) -> config.Scenario:
    text = scenario(work).source_text.replace("batch_size = 256", f"batch_size = {batch}")
    assert f"batch_size = {batch}" in text
    return config.loads(text)


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def all_runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The same two-epoch hetero-LR run with 3x more batches, streamed; and relayed step by step."""
    work = tmp_path_factory.mktemp("stream")
    out = {}
    for name, batch, stream in (("few", 256, True), ("many", 64, True), ("many_relayed", 64, False)):
        out[name] = (work / name, run_scenario_in_process(_with_batch(work, batch), work / name, stream=stream))
    return out


def _completed(all_runs: dict[str, tuple[Path, dict]]) -> dict[str, Path]:
    """The runs' directories, once the test has seen that every run completed (in the test body,
    so a run that failed fails the test rather than erroring its fixture)."""
    for name, (_, status) in all_runs.items():
        assert status["status"] == "completed", (name, status)
    return {name: out for name, (out, _) in all_runs.items()}


def _training_steps(out: Path) -> tuple[list[str], list[str]]:
    """The coordinator's steps of the training phase, and the exchanges streamed inside them."""
    steps = [json.loads(r.payload_text).get("step") for r in read_records(out / "ledger.sqlite") if r.kind == "step"]
    lr = [s for s in steps if s.startswith("hetero_lr/")]
    return [s for s in lr if "." not in s], [s for s in lr if "." in s]


def test_coordinator_steps_per_epoch_do_not_grow_with_batches(all_runs):
    runs = _completed(all_runs)
    few, many, relayed = (_metrics(runs[k]) for k in ("few", "many", "many_relayed"))
    assert few["epochs"] == many["epochs"] == 2
    (few_steps, few_ex), (many_steps, many_ex), (rel_steps, rel_ex) = map(_training_steps, runs.values())
    # the exchanges grow with the batches (3 per batch)...
    assert len(many_ex) == many["streamed_exchanges"] >= len(few_ex) + 3 * 2 * 2
    # ...the coordinator's steps do not: init, one streamed step per epoch, the closing one
    assert few_steps == many_steps == ["hetero_lr/init", "hetero_lr/1", "hetero_lr/2", "hetero_lr/3"]
    assert many["streamed_steps"] == few["streamed_steps"] == 3
    # relayed step by step, the same run needs one coordinator step per exchange
    assert relayed["streamed_steps"] == 0 and not rel_ex
    assert len(rel_steps) == 1 + len(many_ex)


def test_streamed_run_trains_exactly_the_relayed_model(all_runs):
    runs = _completed(all_runs)
    streamed = json.loads((runs["many"] / "models.json").read_text())
    relayed = json.loads((runs["many_relayed"] / "models.json").read_text())
    assert {p: m["sha256"] for p, m in streamed.items()} == {p: m["sha256"] for p, m in relayed.items()}
    assert _metrics(runs["many"])["auc"] == _metrics(runs["many_relayed"])["auc"]


def test_streamed_run_verifies_exchange_by_exchange(all_runs):
    runs = _completed(all_runs)
    out = runs["many"]
    report = verified(out)
    assert report.ok, report.errors[:3]
    steps = [json.loads(r.payload_text).get("step") for r in read_records(out / "ledger.sqlite") if r.kind == "step"]
    exchanges = [s for s in steps if s.startswith("hetero_lr/") and "." in s]
    assert len(exchanges) == _metrics(out)["streamed_exchanges"]
    # each node logged what it sent and received inside the stream under the same sub-step names
    for node in ("bank", "credit_centre"):
        recs = [json.loads(r.payload_text) for r in read_records(out / "nodes" / node / "egress.sqlite")]
        sent_in_stream = {r["step"] for r in recs if r.get("step", "").startswith("hetero_lr/") and "." in r["step"]}
        assert sent_in_stream and sent_in_stream <= set(exchanges)


def test_a_dropped_exchange_record_is_named_byverified(all_runs, tmp_path):
    """The ledger's exchange records are what verify matches node logs against: remove one."""
    runs = _completed(all_runs)
    import shutil
    import sqlite3

    copy = tmp_path / "run"
    shutil.copytree(runs["many"], copy)
    with sqlite3.connect(copy / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT seq, payload FROM fedcredit_records WHERE kind='step'").fetchall()
        seq = next(s for s, p in rows if '"hetero_lr/1.3"' in p)
        conn.execute("DELETE FROM fedcredit_records WHERE seq=?", (seq,))
    report = verified(copy)
    assert not report.ok
    assert any("hetero_lr/1.3" in e or f"#{seq}" in e for e in report.errors), report.errors[:3]


# -- the hub on its own: toy parties ping-ponging a counter ---------------------------------------


@dataclass
class Ping:
    n: int


class PingPong:
    """Sends the peer its counter + 1 each exchange; asks to pause at ``pause_at``; raises at ``fail_at``."""

    def __init__(self, name: str, peer: str, pause_at: int = 10**9, fail_at: int = 10**9) -> None:
        self.name, self.peer, self.pause_at, self.fail_at = name, peer, pause_at, fail_at
        self.seen: list[int] = []
        self.finished = False

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        n = max([wire.decode(e.payload, Ping).n for e in inbox], default=0)
        if n >= self.fail_at:
            raise RuntimeError(f"{self.name} broke at {n}")
        self.seen.append(n)
        return [Envelope(self.name, self.peer, wire.encode(Ping(n + 1)))]


def _sign(party: str):
    """Stand-in for the node's signing: a SignedEnvelope carrying the sub-step (no key needed here)."""
    seq = [0]

    def seal(sub: str, outbox: list[Envelope]) -> list[Envelope]:
        out = []
        for e in outbox:
            out.append(SignedEnvelope(e.sender, e.recipient, e.payload, "ping", sub, seq[0], bytes(64)))
            seq[0] += 1
        return out

    return seal


def _play(hub: ExchangeHub, parties: dict[str, PingPong], *, records: list, timeout: float = 30.0) -> dict:
    invites = hub.open("ping/1", 1, sorted(parties), set(parties), lambda *a: records.append(a), timeout)
    results: dict[str, object] = {}

    def node(name: str) -> None:
        party = parties[name]
        try:
            client = ExchangeClient(StreamInvite.from_params(invites[name]), name)
            first = [Envelope(party.peer, name, wire.encode(Ping(0)))]
            results[name] = stream_party(
                client,
                "ping/1",
                party,
                first,
                seal=_sign(name),
                accept=lambda sub, inbox: [e.plain() for e in inbox],
                pause=lambda: len(party.seen) >= party.pause_at,
            )
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            results[name] = exc

    threads = [threading.Thread(target=node, args=(n,)) for n in parties]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    results["outcome"] = hub.close()
    return results


@pytest.fixture()
def hub():
    h = ExchangeHub()
    yield h
    h.stop()


def test_hub_runs_exchanges_until_a_party_pauses_and_records_each(hub):
    records: list = []
    got = _play(hub, {"a": PingPong("a", "b", pause_at=5), "b": PingPong("b", "a")}, records=records)
    outcome = got["outcome"]
    assert outcome.failure is None
    assert got["a"] == got["b"] == outcome.exchanges == 5
    assert [r[0] for r in records] == [f"ping/1.{m}" for m in range(1, 6)]
    assert all(sorted(r[3]) == ["a", "b"] and len(r[2]) == 2 for r in records)
    # what was posted last is handed back for the relay's next step, not delivered in the stream
    assert sorted(e.sender for e in outcome.leftover) == ["a", "b"]


def test_a_party_failing_mid_stream_stops_the_other_at_once_and_is_named(hub):
    t = time.monotonic()
    got = _play(hub, {"a": PingPong("a", "b"), "b": PingPong("b", "a", fail_at=6)}, records=[], timeout=600)
    assert time.monotonic() - t < 30  # not after the step timeout
    party, step, reason = got["outcome"].failure
    assert party == "b" and step.startswith("ping/1.") and "broke at" in reason
    assert isinstance(got["b"], RuntimeError)
    assert isinstance(got["a"], ExchangeError) and "'b'" in str(got["a"])


def test_hub_refuses_a_wrong_token_another_partys_token_and_a_spent_one(hub):
    invites = hub.open("ping/1", 1, ["a", "b"], {"a", "b"}, lambda *a: None, 30)
    inv_a = StreamInvite.from_params(invites["a"])
    with pytest.raises(ExchangeError, match="unknown or already used token"):
        ExchangeClient(StreamInvite(inv_a.address, inv_a.session, "00" * 32, "a", False), "a")
    # b presenting a's token (the invitation says b, the token was issued to a)
    with pytest.raises(ExchangeError, match="issued to 'a'"):
        ExchangeClient(StreamInvite(inv_a.address, inv_a.session, inv_a.token, "b", False), "b")
    ok = ExchangeClient(inv_a, "a")  # the impostor did not spend it
    with pytest.raises(ExchangeError, match="unknown or already used token"):
        ExchangeClient(inv_a, "a")
    ok.close()
    assert len(hub.refusals) == 3
    hub.abort("coordinator", "test over")


def test_plaintext_hub_stays_on_this_machine():
    with pytest.raises(ExchangeError, match="loopback only"):
        ExchangeHub(host="0.0.0.0")
    remote = StreamInvite("10.1.2.3:5555", "s", "t", "a", tls=False)
    with pytest.raises(ExchangeError, match="plaintext exchange hub off this machine"):
        ExchangeClient(remote, "a")
    with pytest.raises(ExchangeError, match="no CA configured"):
        ExchangeClient(StreamInvite("hub.example:5555", "s", "t", "a", tls=True), "a")
    with pytest.raises(ExchangeError, match="addressed to 'b'"):
        ExchangeClient(StreamInvite("127.0.0.1:1", "s", "t", "b", tls=False), "a")
