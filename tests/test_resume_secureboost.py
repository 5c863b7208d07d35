"""Resume (#16 item 3) for SecureBoost: per tree, with the trees of an uninterrupted run.

Two levels:

* protocol (no Flower): both roles are driven step by step as the relay does; at the cut
  ``secureboost@t`` (guest one step earlier than host: messages alternate) both are rebuilt
  from those states alone, resumed, and the trees must equal the plaintext reference
  :class:`~protocols.gbdt.plain.PlainGBDT` node for node (an independent implementation).
* run (in process, Flower's in-memory grid): the coordinator is "killed" (a ``BaseException``
  from the grid's tap, like SIGKILL nothing closes the ledger) after the checkpoint of tree k;
  the resumed run retrains only the remaining trees, scores the test rows bit for bit like an
  uninterrupted run, and its ledger records ``run_interrupted``/``run_resumed`` and verifies.
  Model files cannot be compared byte for byte with another run's: the host's opaque split ids
  (and the guest's Paillier key) are fresh OS randomness in every run by design
  (``protocols.secureboost.config``), so the joint model is compared with those ids resolved
  through the host's table. A checkpoint edited between interruption and resumption is refused.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.ledger import load_public_key, read_records, verify
from parties.common import transport
from parties.in_process import run_scenario_in_process
from protocols.common import wire
from protocols.common.party import Envelope
from protocols.gbdt.plain import OWNER_HOST, PlainGBDT
from protocols.secureboost import SecureBoostConfig, SecureBoostGuest, SecureBoostHost
from protocols.secureboost.model import SecureBoostGuestModel, SecureBoostHostModel

GUEST, HOST = "bank", "centre"


# -- protocol level ----------------------------------------------------------------------------
def _data(n: int = 300, n_val: int = 100, seed: int = 3):
    rng = np.random.default_rng(seed)
    m = n + n_val
    Xg = rng.normal(size=(m, 3))
    Xh = np.column_stack([rng.normal(size=m), rng.integers(0, 5, size=m).astype(float), rng.exponential(size=m)])
    logit = 1.1 * Xg[:, 0] - 1.4 * Xh[:, 0] + 0.6 * (Xh[:, 1] >= 2) + 0.4 * np.log1p(Xh[:, 2])
    y = (rng.random(m) < 1 / (1 + np.exp(-logit))).astype(int)
    return (Xg[:n], Xh[:n], y[:n]), (Xg[n:], Xh[n:], y[n:])


def _cfg(**kw) -> SecureBoostConfig:
    base = dict(n_trees=5, max_depth=3, max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1)
    base.update(kw)
    return SecureBoostConfig(**base)


class Driver:
    """Both roles stepped as the relay does (only the party with mail is called), every state
    kept: ``boundaries[(party, t)]`` is the state a party ended its step with at label ``@t``."""

    def __init__(self, cfg: SecureBoostConfig, train, val):
        (self.Xg, self.Xh, self.y), (self.Xgv, self.Xhv, self.yv) = train, val
        self.cfg = cfg
        self.boundaries: dict[tuple[str, int], bytes] = {}
        self.order: list[tuple[str, int]] = []

    def guest(self, state: bytes | None = None) -> SecureBoostGuest:
        if state is not None:
            return SecureBoostGuest.from_state(state, self.Xg, self.y, self.Xgv, self.yv)
        return SecureBoostGuest(GUEST, HOST, self.Xg, self.y, self.cfg, X_val=self.Xgv, y_val=self.yv)

    def host(self, state: bytes | None = None) -> SecureBoostHost:
        if state is not None:
            return SecureBoostHost.from_state(state, self.Xh, self.Xhv)
        return SecureBoostHost(HOST, GUEST, self.Xh, self.cfg, X_val=self.Xhv)

    def _note(self, name: str, party) -> None:
        t = party.resume_point()
        if t is not None:
            self.boundaries[(name, t)] = party.to_state()
            self.order.append((name, t))

    def run(self, parties: dict, outgoing: list[Envelope]) -> dict:
        for name, p in parties.items():
            self._note(name, p)
        while outgoing:
            inbox: dict[str, list[Envelope]] = {}
            for env in outgoing:
                inbox.setdefault(env.recipient, []).append(env)
            outgoing = []
            for name, msgs in inbox.items():
                # every step on a party rebuilt from bytes, as a node does
                cls = SecureBoostGuest if name == GUEST else SecureBoostHost
                state = parties[name].to_state()
                parties[name] = self.guest(state) if cls is SecureBoostGuest else self.host(state)
                outgoing += parties[name].receive(msgs)
                self._note(name, parties[name])
        assert all(p.finished for p in parties.values())
        return parties

    def fresh(self) -> dict:
        parties = {GUEST: self.guest(), HOST: self.host()}
        return self.run(parties, [e for p in parties.values() for e in p.start()])

    def resumed_from(self, t: int) -> dict:
        parties = {GUEST: self.guest(self.boundaries[(GUEST, t)]), HOST: self.host(self.boundaries[(HOST, t)])}
        out = [e for p in parties.values() for e in p.resume()]
        return self.run(parties, out)


def assert_trees_equal_reference(guest: SecureBoostGuest, host: SecureBoostHost, ref: PlainGBDT) -> None:
    gm, hm = guest.model, host.model
    assert len(gm.trees) == len(ref.trees)
    for t, (a, b) in enumerate(zip(gm.trees, ref.trees)):
        feats, thr = a.feature.copy(), a.threshold.copy()
        for k in np.flatnonzero(a.owner == OWNER_HOST):
            feats[k], thr[k] = hm.lookup(int(a.split_id[k]))
        assert a.owner.tolist() == b.owner.tolist(), f"tree {t}: owners differ"
        assert feats.tolist() == b.feature.tolist(), f"tree {t}: split features differ"
        np.testing.assert_array_equal(thr, b.threshold, err_msg=f"tree {t}")
        np.testing.assert_array_equal(a.value, b.value, err_msg=f"tree {t}")
        np.testing.assert_array_equal(a.gain, b.gain, err_msg=f"tree {t}")
    # the host's table holds exactly the splits the guest's trees use (none of a lost reply)
    assert sorted(hm.split_ids.tolist()) == sorted(gm.host_split_ids.tolist())


@pytest.mark.parametrize("kw", [{}, {"complete_secure": True}])
def test_protocol_resumes_at_every_tree_boundary_with_the_reference_trees(kw):
    train, val = _data()
    cfg = _cfg(**kw)
    ref = PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(
        np.hstack(train[:2]), train[2], n_guest_features=3, X_val=np.hstack(val[:2]), y_val=val[2]
    )
    d = Driver(cfg, train, val)
    whole = d.fresh()
    assert_trees_equal_reference(whole[GUEST], whole[HOST], ref)  # the control: no resume
    trees = sorted({t for _, t in d.order})
    assert trees == list(range(1, cfg.n_trees)), d.order
    for t in trees:
        # the cut: the guest reaches @t one step before the host (alternating messages)
        assert d.order.index((GUEST, t)) + 1 == d.order.index((HOST, t))
        resumed = d.resumed_from(t)
        assert_trees_equal_reference(resumed[GUEST], resumed[HOST], ref)
        assert [h["tree"] for h in resumed[GUEST].history] == list(range(cfg.n_trees))


def test_protocol_refuses_to_resume_off_a_boundary():
    """A state between boundaries (host waiting for level-1 decisions) cannot resume: sending
    anything from it would repeat a message the peer already acted on."""
    train, val = _data()
    d = Driver(_cfg(n_trees=2), train, val)
    g, h = d.guest(), d.host()
    reply = h.receive(g.start())
    g.receive(reply)  # the guest moves to level 1; neither is at a boundary now
    with pytest.raises(Exception, match="not at a tree boundary"):
        g.resume()
    with pytest.raises(Exception, match="not at a tree boundary"):
        h.resume()


# -- run level (in process) --------------------------------------------------------------------
N_ROWS = 1200
N_TREES = 4
KILL_AFTER = 2  # trees completed when the coordinator dies


class CoordinatorKilled(BaseException):  # noqa: N818 - stands for a SIGKILL, not an error
    """The coordinator process vanished: no handler of the coordinator runs."""


SCENARIO = f"""
[run]
name = "resume-sb"
mode = "secureboost"
seed = 42
[parties.bank]
role = "bank"
data = "{{bank}}"
[parties.credit_centre]
role = "credit_centre"
data = "{{centre}}"
[consent]
mode = "demo"
[secureboost]
n_trees = {N_TREES}
max_depth = 2
max_bins = 8
key_bits = 1024
insecure_test_key = true
n_workers = 1
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    d = tmp_path_factory.mktemp("sbdata")
    write_vertical_subset(d, N_ROWS)
    return config.loads(SCENARIO.format(bank=d / "bank.csv", centre=d / "centre.csv"))


@pytest.fixture(scope="module")
def uninterrupted(scenario, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sbwhole")
    status = run_scenario_in_process(scenario, out)
    assert status["status"] == "completed", status
    return out


def kill_after(out: Path, trees: int, extra_steps: int):
    """A tap killing the coordinator ``extra_steps`` training steps after checkpoint ``@trees``
    (the nodes already answered them: their live state is ahead of the checkpoint)."""
    seen: list[str] = []

    def tap(node_id: int, request, reply) -> None:
        _, step, _, _ = transport.read_request(request.content)
        ck = out / "checkpoint.json"
        if not ck.exists() or json.loads(ck.read_text()).get("epochs", 0) < trees:
            return
        if step not in seen:
            seen.append(step)
        if len(seen) > extra_steps:
            raise CoordinatorKilled(step)

    return tap


@pytest.fixture(scope="module")
def interrupted(scenario, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sbinterrupted") / "run"
    with pytest.raises(CoordinatorKilled):
        run_scenario_in_process(scenario, out, tap=kill_after(out, KILL_AFTER, extra_steps=2))
    assert not (out / "status.json").exists()
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["training"] == "secureboost" and ck["epochs"] == KILL_AFTER, ck
    assert ck["label"] == f"secureboost@{KILL_AFTER}"
    for party in ("bank", "credit_centre"):  # both nodes wrote the cut, in their own directories
        files = list((out / "nodes" / party / "checkpoints").glob(f"*/secureboost@{KILL_AFTER}.json"))
        assert len(files) == 1, files
    report = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
    assert report.intact and not report.complete, report.errors
    return out


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where / "run")
    return where / "run"


def verified(out: Path):
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )


def joint_model(out: Path) -> str:
    """Both released model parts as one joint model (canonical JSON: NaN thresholds of leaves
    compare equal), host ids resolved via the host's table."""
    parts = {p.parent.name: json.loads(p.read_text()) for p in (out / "nodes").glob("*/model.json")}
    gm = SecureBoostGuestModel.from_bytes(bytes.fromhex(parts["bank"]["model"]["model_hex"]))
    hm = SecureBoostHostModel.from_bytes(bytes.fromhex(parts["credit_centre"]["model"]["model_hex"]))
    trees = []
    for t in gm.trees:
        nodes = []
        for k in range(t.n_nodes):
            if t.owner[k] == OWNER_HOST:
                f, thr = hm.lookup(int(t.split_id[k]))
                split = ["host", int(f), float(thr)]
            else:
                split = [int(t.owner[k]), int(t.feature[k]), float(t.threshold[k])]
            nodes.append([split, int(t.left[k]), int(t.right[k]), float(t.value[k]), float(t.gain[k])])
        trees.append(nodes)
    assert hm.split_ids.size == gm.host_split_ids.size  # no stray ids from a lost reply
    rest = {p: {k: v for k, v in part.items() if k != "model"} for p, part in parts.items()}
    return json.dumps({"base": gm.base_score, "trees": trees, "parts": rest}, sort_keys=True)


def test_per_tree_checkpoints_pruned_to_the_latest_two(interrupted):
    names = sorted(p.name for p in (interrupted / "nodes" / "credit_centre" / "checkpoints").glob("*/secureboost@*"))
    assert names[-1] in (f"secureboost@{KILL_AFTER}.json", f"secureboost@{KILL_AFTER + 1}.json")
    assert len(names) <= 2, names


def test_resumed_run_continues_from_the_tree_and_has_the_uninterrupted_model(scenario, interrupted, uninterrupted):
    out = copy_of(interrupted, interrupted.parent.parent / "resumed")
    status = run_scenario_in_process(scenario, out, resume=True)
    assert status["status"] == "completed", status
    assert joint_model(out) == joint_model(uninterrupted)
    scored = [np.load(d / "nodes" / "bank" / "test_scores.npz") for d in (out, uninterrupted)]
    np.testing.assert_array_equal(scored[0]["score"], scored[1]["score"])  # bit for bit
    m, whole = (json.loads((d / "metrics.json").read_text()) for d in (out, uninterrupted))
    assert m["auc"] == whole["auc"] and m["trees"] == whole["trees"] == N_TREES
    assert m["resumed"] == {"segment": 1, "from": f"secureboost@{KILL_AFTER}", "epochs": KILL_AFTER}
    assert [h["train_loss"] for h in m["history"]] == [h["train_loss"] for h in whole["history"]]
    # only the remaining trees were trained in the resumed segment
    recs = read_records(out / "ledger.sqlite")
    kinds = [r.kind for r in recs]
    i, j = kinds.index("run_interrupted"), kinds.index("run_resumed")
    assert i < j and kinds.count("run_start") == 1 and kinds.count("run_end") == 1
    assert recs[i].payload["checkpoint"] == f"secureboost@{KILL_AFTER}"
    r1 = [r.payload["step"] for r in recs[j:] if r.kind == "step" and "secureboost/" in r.payload["step"]]
    r0 = [r.payload["step"] for r in recs[:i] if r.kind == "step" and "secureboost/" in r.payload["step"]]
    whole_steps = [
        r.payload["step"]
        for r in read_records(uninterrupted / "ledger.sqlite")
        if r.kind == "step" and "secureboost/" in r.payload["step"]
    ]
    assert r1 and all(s.startswith("r1:secureboost/") for s in r1)
    assert len(r1) < len(whole_steps) < len(r0) + len(r1)
    # the first trees are segment 0's very trees (same opaque host ids), not retrained ones
    (ck,) = (interrupted / "nodes" / "bank" / "checkpoints").glob(f"*/secureboost@{KILL_AFTER}.json")
    state = json.loads(ck.read_bytes().partition(b"\n")[2])["state"]["phase:secureboost"]
    kept = SecureBoostGuest.peek_state(base64.b64decode(state["b64"])).trees
    final = SecureBoostGuestModel.from_bytes(
        bytes.fromhex(json.loads((out / "nodes" / "bank" / "model.json").read_text())["model"]["model_hex"])
    ).trees
    assert len(kept) == KILL_AFTER
    for a, b in zip(kept, final):
        for k, v in b.to_dict().items():
            np.testing.assert_array_equal(np.asarray(a[k]), v, err_msg=k)
    report = verified(out)
    assert report.ok and report.complete, report.errors


def test_an_edited_node_checkpoint_is_refused_naming_the_file(scenario, interrupted, tmp_path):
    """Planted tamper: between interruption and resumption the host's tree checkpoint is edited
    (one split's bin in its lookup table, re-encoded cleanly: it would load). The node
    refuses it before loading anything, the run stops naming the file, the ledger verifies."""
    out = copy_of(interrupted, tmp_path)
    (path,) = (out / "nodes" / "credit_centre" / "checkpoints").glob(f"*/secureboost@{KILL_AFTER}.json")
    head, _, body = path.read_bytes().partition(b"\n")  # signature line, then the signed document
    doc = json.loads(body)
    enc = doc["state"]["phase:secureboost"]
    s = SecureBoostHost.peek_state(base64.b64decode(enc["b64"]))  # a well-formed host state...
    assert s.model_bin, "the host has host splits in its table at this tree"
    s.model_bin[0] += 1  # ...whose first host split now means another threshold
    doc["state"]["phase:secureboost"] = {"b64": base64.b64encode(wire.encode(s)).decode()}
    path.write_bytes(head + b"\n" + json.dumps(doc, sort_keys=True).encode())
    status = run_scenario_in_process(scenario, out, resume=True)
    assert status["status"] == "failed" and status["party"] == "credit_centre" and status["step"] == "hello", status
    assert str(path) in status["error"] and "does not verify" in status["error"], status
    assert not list((out / "nodes").glob("*/model.json"))
    # the refusal is an answer, so the stopped run's ledger and both node logs still agree
    report = verified(out)
    assert report.ok, report.errors
    kinds = [r.kind for r in read_records(out / "ledger.sqlite")]
    assert kinds[-1] == "run_end" and "run_resumed" in kinds


def test_no_validation_rows_is_training_without_validation():
    """An empty validation split (``[evaluation] validation_fraction = 0``, as the deployment
    tests use) trains the reference's trees; before, NaN validation losses stopped training and
    the finish summary could not be serialised."""
    train, _ = _data()
    cfg = _cfg(n_trees=3, early_stopping_rounds=1)
    empty = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=int))
    d = Driver(cfg, train, empty)
    parties = d.fresh()
    ref = PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(np.hstack(train[:2]), train[2], n_guest_features=3)
    assert_trees_equal_reference(parties[GUEST], parties[HOST], ref)
    hist = parties[GUEST].history
    assert len(hist) == 3 and all(np.isfinite(h["train_loss"]) and "val_loss" not in h for h in hist)
    json.dumps(hist, allow_nan=False)


def test_killed_between_the_banks_and_the_centres_boundary(scenario, uninterrupted, tmp_path):
    """The coordinator dies right after the bank wrote ``secureboost@2`` and before the centre
    did: ``checkpoint.json`` still says ``@1`` (both nodes' ``@1`` files are kept although the
    bank moved on), and the resumed run from there has the uninterrupted model."""
    out = tmp_path / "run"

    def tap(node_id: int, request, reply) -> None:
        _, step, _, _ = transport.read_request(request.content)
        _, _, summary, _ = transport.read_reply(reply.content)
        if step.startswith("secureboost/") and summary.get("checkpoint") == "secureboost@2":
            raise CoordinatorKilled(step)  # only the bank is called in that step

    with pytest.raises(CoordinatorKilled):
        run_scenario_in_process(scenario, out, tap=tap)
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["label"] == "secureboost@1", ck
    bank = sorted(p.name for p in (out / "nodes" / "bank" / "checkpoints").glob("*/secureboost@*"))
    centre = sorted(p.name for p in (out / "nodes" / "credit_centre" / "checkpoints").glob("*/secureboost@*"))
    assert bank == ["secureboost@1.json", "secureboost@2.json"] and centre == ["secureboost@1.json"]
    status = run_scenario_in_process(scenario, out, resume=True)
    assert status["status"] == "completed", status
    assert joint_model(out) == joint_model(uninterrupted)
    assert json.loads((out / "metrics.json").read_text())["resumed"]["from"] == "secureboost@1"
    assert verified(out).ok
