"""Unbalanced PSI as the align phase of a vertical run (``[psi] mode = "unbalanced"``), end to end.

In-process runs (the real coordinator and ClientApp, :func:`parties.in_process.run_scenario_in_process`)
on a small slice of the bundled data where the centre holds firms the bank does not know and the
bank customers the centre does not know. Checked: the unbalanced run trains exactly the model of
the balanced run; a second run reuses the centre's prepared table and the bank's cache (the
store files are not rewritten, the summaries say so); every ledger verifies; a UbMatches altered
on the relay, or sent altered by the bank itself, is refused naming the party and the step.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedcredit import config
from fedcredit.ledger import load_public_key, read_records, verify
from parties.in_process import run_scenario_in_process
from protocols.common.party import Envelope
from protocols.psi.unbalanced import bank as ub_bank
from protocols.psi.unbalanced.relay import UbBankParty, UbCentreParty
from protocols.psi.unbalanced.store import CACHE, TABLE, BankStore, CentreStore, read_header

BANK_ROWS, SHIFT = 700, 150  # the bank: customers 0..699; the centre: customers 150..849 (550 shared)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from fedcredit.data.default_credit import load_vertical
    from fedcredit.data.schema import LABEL_COLUMN

    d = tmp_path_factory.mktemp("ubdata")
    bank, centre = load_vertical("all", scaled=False)
    b = pd.DataFrame(bank.features[:BANK_ROWS], columns=bank.feature_names)
    b.insert(0, "uscc", bank.ids[:BANK_ROWS])
    b.insert(1, LABEL_COLUMN, bank.labels[:BANK_ROWS])
    keep = set(bank.ids[SHIFT : SHIFT + BANK_ROWS])
    cm = np.array([u in keep for u in centre.ids])
    c = pd.DataFrame(centre.features[cm], columns=centre.feature_names)
    c.insert(0, "uscc", np.array(centre.ids)[cm])
    b.to_csv(d / "bank.csv", index=False)
    c.to_csv(d / "centre.csv", index=False)
    return {"dir": d, "common": len(set(bank.ids[:BANK_ROWS]) & keep)}


def scenario(data: dict, work: Path, psi: str = "") -> config.Scenario:
    return config.loads(f"""
[run]
name = "ub"
mode = "vertical-lr"
seed = 11
[parties.bank]
role = "bank"
data = "{data["dir"] / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{data["dir"] / "centre.csv"}"
[consent]
mode = "demo"
demo_dir = "{work / "consent-demo"}"
[lr]
epochs = 2
batch_size = 256
key_bits = 1024
insecure_test_key = true
[psi]
{psi}
""")


def unbalanced(store: Path, period: str = "2026-11") -> str:
    return f'mode = "unbalanced"\nkey_period = "{period}"\nstore = "{store}"'


def verified(out: Path):
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )


def psi_event(out: Path) -> dict:
    (rec,) = [r for r in read_records(out / "ledger.sqlite") if r.kind == "psi"]
    return json.loads(rec.payload_text)


def weights(out: Path) -> dict:
    return {p: json.loads((out / f"nodes/{p}/model.json").read_text())["model"] for p in ("bank", "credit_centre")}


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict:
    """A balanced run, then two unbalanced runs sharing one store (files inspected in between)."""
    work = tmp_path_factory.mktemp("ubruns")
    store = work / "psi-store"
    out: dict = {"store": store, "work": work}
    out["balanced"] = run_scenario_in_process(scenario(data, work), work / "balanced")
    sc1 = scenario(data, work, unbalanced(store))
    out["captured"], out["grids"], out["sc1"] = [], [], sc1
    out["ub1"] = run_scenario_in_process(
        sc1,
        work / "ub1",
        tap=lambda nid, req, rep: out["captured"].append((nid, req, rep)),
        prepare_grid=out["grids"].append,
    )
    table = CentreStore(store / "credit_centre").table_path("2026-11")
    cache = BankStore(store / "bank").cache_path("2026-11", "credit_centre")
    out["files1"] = {p: (read_header(p), p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode)) for p in (table, cache)}
    out["ub2"] = run_scenario_in_process(scenario(data, work, unbalanced(store)), work / "ub2")
    out["files2"] = {p: (read_header(p), p.stat().st_mtime_ns) for p in (table, cache)}
    out["table"], out["cache"] = table, cache
    return out


def test_unbalanced_run_trains_the_balanced_runs_model_on_the_same_intersection(data, runs):
    work = runs["work"]
    for name in ("balanced", "ub1", "ub2"):
        assert runs[name]["status"] == "completed", runs[name]
    m = {n: json.loads((work / n / "metrics.json").read_text()) for n in ("balanced", "ub1", "ub2")}
    assert m["balanced"]["rows_psi"] == m["ub1"]["rows_psi"] == m["ub2"]["rows_psi"] == data["common"]
    for n in ("ub1", "ub2"):
        assert m[n]["rows_intersection"] == m["balanced"]["rows_intersection"]
        assert m[n]["auc"] == pytest.approx(m["balanced"]["auc"], abs=1e-9)
        assert weights(work / n) == weights(work / "balanced")
        # the ledger records the unbalanced protocol's counts, both parties agreeing on the size
        ev = psi_event(work / n)
        assert ev["bank"]["intersection"] == ev["credit_centre"]["intersection"] == data["common"]
        assert ev["credit_centre"]["table_size"] == BANK_ROWS and ev["bank"]["used"] <= BANK_ROWS


def test_second_run_reuses_the_prepared_table_and_the_banks_cache(runs):
    ev1, ev2 = psi_event(runs["work"] / "ub1"), psi_event(runs["work"] / "ub2")
    assert ev1["credit_centre"]["table_prepared"] == 1 and ev1["bank"]["cache_fetched"] == 1
    assert ev2["credit_centre"]["table_prepared"] == 0 and ev2["bank"]["cache_fetched"] == 0
    assert "cache_sent" not in ev2["credit_centre"]  # no cache round trip in the second run
    for path in (runs["table"], runs["cache"]):
        header, mtime, mode = runs["files1"][path]
        assert runs["files2"][path] == (header, mtime), f"{path.name} was rewritten by the second run"
        assert mode == 0o600 and header["period"] == "2026-11" and header["created"]
    assert read_header(runs["table"])["format"] == TABLE and read_header(runs["cache"])["format"] == CACHE


def test_every_ledger_verifies(runs):
    for name in ("balanced", "ub1", "ub2"):
        report = verified(runs["work"] / name)
        assert report.ok and report.complete, (name, report.errors)


def test_a_new_key_period_prepares_a_new_table_and_drops_the_old_one(data, runs, tmp_path):
    import shutil

    store = tmp_path / "psi-store"
    shutil.copytree(runs["store"], store)  # the 2026-11 store the two runs left (kept for other tests)
    assert (store / "credit_centre" / "table-2026-11.ubpsi").is_file()
    status = run_scenario_in_process(scenario(data, tmp_path, unbalanced(store, "2026-12")), tmp_path / "r")
    assert status["status"] == "completed", status
    ev = psi_event(tmp_path / "r")
    assert ev["credit_centre"]["table_prepared"] == 1 and ev["bank"]["cache_fetched"] == 1
    centre_files = sorted(p.name for p in (store / "credit_centre").glob("*.ubpsi"))
    assert centre_files[-1] == "table-2026-12.ubpsi" and not any("2026-11" in n for n in centre_files)
    assert not any("2026-11" in p.name for p in (store / "bank").glob("*.ubpsi"))


def test_no_id_feature_label_or_centre_token_reaches_the_coordinator(runs):
    """The leak search of tests/test_vertical_run.py over every summary and message of the first
    unbalanced run (the one with the cache hand-over), plus the centre's period tokens as needles."""
    from leak_support import Needle, NeedleIndex
    from test_vertical_run import _all_needles, _leaks

    from parties.common import transport
    from protocols.psi.unbalanced.centre import TableRecord
    from protocols.psi.unbalanced.store import read_file

    work, captured = runs["work"], runs["captured"]
    _, rec = read_file(runs["table"], TABLE, TableRecord)
    tokens = [Needle("credit_centre", "period token", bytes(t)) for t in rec.tokens[:300]]
    needles = _all_needles(runs["grids"][0], runs["sc1"], work / "ub1")
    index = NeedleIndex(needles + tokens)
    # planted first: an aligned USCC, and a token as an unsealed cache would carry it, are found
    uscc = next(n for n in needles if n.what == "USCC")
    assert index.find(b"xx" + uscc.pattern + b"yy") and index.find(b"\x00" + tokens[5].pattern)
    kinds = {e.kind for _, _, rep in captured for e in transport.read_reply(rep.content)[0]}
    assert {"UbCacheRequest", "UbCache", "UbQuery", "UbEvaluated", "UbMatches"} <= kinds
    leaks = _leaks(captured, index)
    assert not leaks, leaks[:10]


# -- tampering ---------------------------------------------------------------------------------


def _flip_last_byte(e):  # noqa: ANN001, ANN202 - a SignedEnvelope
    b = bytearray(e.payload)
    b[-1] ^= 0x01
    return dataclasses.replace(e, payload=bytes(b))


def test_ubmatches_altered_on_the_relay_is_refused_naming_party_and_step(data, tmp_path):
    from simulations.attack_cases.coordinator import Tamper

    def rewrite(step, inbox):  # noqa: ANN001, ANN202
        return [_flip_last_byte(e) if e.kind == "UbMatches" else e for e in inbox]

    tamper = Tamper("credit_centre", rewrite)
    sc = scenario(data, tmp_path, unbalanced(tmp_path / "store"))
    status = run_scenario_in_process(sc, tmp_path / "r", prepare_grid=lambda g: tamper.install(g, sc))
    assert tamper.fired.startswith("align/"), "the tamper never fired"
    assert status["status"] == "failed" and status["party"] == "credit_centre", status
    assert status["step"].startswith("align"), status
    report = verified(tmp_path / "r")
    assert report.first_bad is None and report.complete, report.errors  # the stopped run's chain is intact


def test_ubmatches_altered_by_the_bank_itself_is_refused_by_the_centres_protocol_check(data, tmp_path, monkeypatch):
    """A dishonest bank signs what it sends, so only the protocol check can catch it: plant it."""
    real = ub_bank.BankRun.handle
    fired: list[bool] = []

    def handle(self, msg):  # noqa: ANN001, ANN202
        m = real(self, msg)
        fired.append(True)
        return dataclasses.replace(m, sealed=m.sealed[:-1] + bytes([m.sealed[-1] ^ 1]))

    monkeypatch.setattr(ub_bank.BankRun, "handle", handle)
    status = run_scenario_in_process(scenario(data, tmp_path, unbalanced(tmp_path / "store")), tmp_path / "r")
    assert fired, "the tamper never fired"
    assert status["status"] == "failed" and status["party"] == "credit_centre", status
    assert status["step"].startswith("align"), status
    assert "step 3 (matched positions)" in status["error"] and "fail authentication" in status["error"], status
    report = verified(tmp_path / "r")
    assert report.ok and report.complete, report.errors


# -- restartable parties without Flower -------------------------------------------------------


def test_a_state_of_another_run_is_refused(tmp_path):
    from fedcredit.data import uscc

    ids = uscc.generate(60, np.random.default_rng(1))
    store = BankStore(tmp_path / "b")
    a = UbBankParty("bank", "centre", ids[:40], session="run-A", period="p", store=store)
    a.start()
    with pytest.raises(Exception, match="state is of run 'run-A', not of this run 'run-B'"):
        UbBankParty.from_state(a.to_state(), ids[:40], session="run-B", store=store)
    c = UbCentreParty(
        "centre", "bank", ids[20:], session="run-A", period="p", store=CentreStore(tmp_path / "c"), truncate=12
    )
    c.start()
    with pytest.raises(Exception, match="not of this run"):
        UbCentreParty.from_state(
            c.to_state(), ids[20:], session="run-B", store=CentreStore(tmp_path / "c"), truncate=12
        )
    # and a cache request naming another bank than the peer the run is with is refused
    from protocols.common import wire
    from protocols.common.channel import new_private_key, public_key_of
    from protocols.psi.unbalanced.messages import PROTOCOL, UbCacheRequest

    forged = UbCacheRequest(PROTOCOL, "p", "other", 0, public_key_of(new_private_key()))
    with pytest.raises(Exception, match="request names bank 'other'"):
        c.receive([Envelope("bank", "centre", wire.encode(forged))])


# -- one centre, two banks at once (issue 19 item 2) --------------------------------------------


def _hosted_scenario(data: Path, bank: str, store: Path) -> config.Scenario:
    return config.loads(f"""
[run]
name = "ub-hosted-{bank}"
mode = "vertical-lr"
seed = 7
[parties.{bank}]
role = "bank"
data = "synthetic:{data}"
[parties.credit_centre]
role = "credit_centre"
data = "synthetic:{data}"
[consent]
mode = "demo"
[lr]
epochs = 1
batch_size = 1024
key_bits = 1024
insecure_test_key = true
[psi]
{unbalanced(store)}
""")


def _run_secrets(state) -> tuple[str, bytes]:  # noqa: ANN001 - a Flower RecordDict
    """(run id, the centre's per-run channel private key) from a hosted run's centre state."""
    from protocols.common import wire
    from protocols.psi.unbalanced.centre import CentreRunState
    from protocols.psi.unbalanced.relay import _UbState

    rec = state.config_records["fedcredit"]
    s = wire.decode(rec["phase:align"], _UbState)  # kept from the evaluate step (the last one stored)
    return str(rec["run_id"]), wire.decode(s.run, CentreRunState).channel


def _blobs(state) -> bytes:  # noqa: ANN001
    return b"\x00".join(
        v if isinstance(v, bytes) else str(v).encode() for r in state.config_records.values() for v in r.values()
    )


def _files(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file())


def test_two_banks_run_concurrently_on_one_centre_table_and_stay_isolated(tmp_path):
    from fedcredit.data.synth import generate
    from parties.common.centre_host import CentreHost
    from parties.common.grid import FIRST_NODE_ID
    from parties.hosted import submit_run
    from protocols.psi.unbalanced.centre import GrantRecord
    from protocols.psi.unbalanced.store import GRANT, read_file

    data, store = tmp_path / "synth", tmp_path / "psi-store"
    generate(4000, 2, data, seed=5)
    host = CentreHost(FIRST_NODE_ID + 1, max_concurrent=2)
    outs = {k: tmp_path / f"run_{k}" for k in ("a", "b")}
    try:
        futs = {
            k: submit_run(host, k, f"bank_{k}", _hosted_scenario(data, f"bank_{k}", store), outs[k], keep_slot=True)
            for k in outs
        }
        statuses = {k: f.result(timeout=600) for k, f in futs.items()}
        assert all(s["status"] == "completed" for s in statuses.values()), statuses
        assert host.peak_running == 2  # the two runs overlapped on the one centre node
        secrets = {k: _run_secrets(host.slot(k).context.state) for k in outs}
        blobs = {k: _blobs(host.slot(k).context.state) for k in outs}
    finally:
        host.shutdown()
    # one table for both banks, prepared once (under the store's lock), each bank's grant its own
    events = {k: psi_event(outs[k]) for k in outs}
    assert sorted(e["credit_centre"]["table_prepared"] for e in events.values()) == [0, 1]
    centre = CentreStore(store / "credit_centre")
    assert len(list(centre.dir.glob("table-*.ubpsi"))) == 1
    for k, other in (("a", "b"), ("b", "a")):
        run_id, channel = secrets[k]
        _, grant = read_file(centre.grant_path("2026-11", f"bank_{k}"), GRANT, GrantRecord)
        assert grant.bank == f"bank_{k}" and grant.runs == [run_id]  # no trace of the other bank's run
        assert grant.queried == events[k]["bank"]["used"]
        # this run's per-run centre key is nowhere the other run (or the shared store) can read;
        # it is in its own run's state (the needle is real, so its absence elsewhere means something)
        assert channel in blobs[k] and run_id.encode() in blobs[k]
        assert channel not in blobs[other] and channel not in _files(outs[other]) and channel not in _files(store)
        assert run_id.encode() not in blobs[other]
        # each bank's cache lives in its own store directory, addressed to it
        cache = BankStore(store / f"bank_{k}").cache_path("2026-11", "credit_centre")
        assert read_header(cache)["bank"] == f"bank_{k}"
    # the other bank's run id does not open this bank's centre state, and a used run id is refused
    table, _ = centre.table("2026-11", [], digest=read_header(centre.table_path("2026-11"))["ids_digest"])
    with centre.grants(table, "bank_a") as t:
        with pytest.raises(Exception, match="already started"):
            t.run("bank_a", secrets["a"][0])
        with pytest.raises(Exception, match="has no cache"):
            t.run("bank_b", secrets["b"][0])  # only this bank's grant is loaded: bank_b is not addressable


def test_a_query_of_another_key_period_is_refused_before_the_centre_prepares_anything(tmp_path):
    from fedcredit.data import uscc

    ids = uscc.generate(60, np.random.default_rng(2))
    bank_store, centre_store = BankStore(tmp_path / "b"), CentreStore(tmp_path / "c")
    # the bank holds a cache of period p1 (from a centre table of p1) ...
    old = UbCentreParty("centre", "bank", ids[20:], session="r0", period="p1", store=centre_store, truncate=12)
    bank = UbBankParty("bank", "centre", ids[:40], session="r0", period="p1", store=bank_store)
    old.start()
    cache = old.receive(bank.start())
    query = bank.receive(cache)
    assert query[0].kind == "UbQuery"
    # ... and queries a centre that has moved to p2: refused naming step and both periods, and the
    # centre's p1 table is not replaced by a p2 preparation
    new = UbCentreParty("centre", "bank", ids[20:], session="r1", period="p2", store=centre_store, truncate=12)
    new.start()
    with pytest.raises(Exception, match=r"step 1 \(bank's blinded points\): key period 'p1', expected 'p2'"):
        new.receive(query)
    assert [p.name for p in centre_store.dir.glob("table-*.ubpsi")] == ["table-p1.ubpsi"]


def test_a_damaged_or_misplaced_store_file_is_refused_naming_the_file(tmp_path):
    from fedcredit.data import uscc
    from protocols.psi.unbalanced.store import StoreError

    ids = uscc.generate(80, np.random.default_rng(3))
    centre_store = CentreStore(tmp_path / "c")

    def hand_over(bank: str, session: str) -> None:
        c = UbCentreParty("centre", bank, ids[20:], session=session, period="p", store=centre_store, truncate=12)
        b = UbBankParty(bank, "centre", ids[:40], session=session, period="p", store=BankStore(tmp_path / bank))
        c.start()
        b.receive(c.receive(b.start()))

    hand_over("bank_a", "r1")
    hand_over("bank_b", "r2")
    # bank_b's grant put where bank_a's belongs: bank_a's next run must not adopt it
    centre_store.grant_path("p", "bank_b").replace(centre_store.grant_path("p", "bank_a"))
    with pytest.raises(StoreError, match=r"grant-p-.*holds the grant of 'bank_b', not 'bank_a'"):
        hand_over("bank_a", "r3")
    # a damaged table: the error names the file
    table = centre_store.table_path("p")
    table.write_bytes(table.read_bytes()[:9] + b"{not json\n")
    with pytest.raises(StoreError, match=r"table-p\.ubpsi: unreadable header"):
        hand_over("bank_b", "r4")


def test_centre_data_changed_mid_period_prepares_again_and_replaces_the_banks_stale_cache(tmp_path):
    """Planted: the centre's table changes under a bank's stored cache. Without the cache digest in
    the query, the bank would match old tokens against a new k_C and find nothing."""
    from fedcredit.data import uscc
    from protocols.common.party import run_local

    ids = uscc.generate(140, np.random.default_rng(4))
    bank_ids = ids[:60]
    bank_store, centre_store = BankStore(tmp_path / "b"), CentreStore(tmp_path / "c")

    def run(centre_ids: list[str], session: str) -> tuple[dict, dict, list[str]]:
        parties = {
            "bank": UbBankParty("bank", "centre", bank_ids, session=session, period="p", store=bank_store),
            "centre": UbCentreParty(
                "centre", "bank", centre_ids, session=session, period="p", store=centre_store, truncate=12
            ),
        }

        def restart(name, p):  # noqa: ANN001, ANN202 - every step through to_state/from_state
            opts = {"store": p.store, **({"truncate": 12} if name == "centre" else {})}
            return type(p).from_state(p.to_state(), p.ids, session=session, **opts)

        run_local(parties, restart=restart)
        b, c = parties["bank"].result(), parties["centre"].result()
        assert b.ids == c.ids
        return b.stats, c.stats, b.ids

    first = ids[40:120]
    b1, c1, common1 = run(first, "r1")
    assert set(common1) == set(bank_ids) & set(first) and b1["cache_fetched"] == 1
    old_cache = bank_store.cache_path("p", "centre").read_bytes()
    changed = ids[30:120]  # ten more of the bank's customers joined the centre's table
    b2, c2, common2 = run(changed, "r2")
    assert set(common2) == set(bank_ids) & set(changed) and len(common2) == len(common1) + 10
    assert c2["table_prepared"] == 1 and c2["stale_cache"] == 1 and b2["cache_fetched"] == 1
    assert bank_store.cache_path("p", "centre").read_bytes() != old_cache
    b3, c3, common3 = run(changed, "r3")  # and the next run reuses both again
    assert common3 == common2 and c3["table_prepared"] == 0 and b3["cache_fetched"] == 0
