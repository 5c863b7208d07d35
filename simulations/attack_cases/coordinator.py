"""An untrusted coordinator against real parties: forge, substitute keys, replay, alter, drop, inject.

Each case runs a real scenario in process (the production coordinator and ClientApp on
:class:`~parties.common.grid.InProcessGrid`) with the coordinator's outgoing messages rewritten
by a :class:`Tamper` -- exactly what a coordinator that runs modified code can do: it builds every
request a node receives. The verdict is read from what the honest side actually did, never assumed:

* *refused*: the recipient node's own signed log holds a ``refused`` record for the planted
  envelope, and ``status.json`` names that party and step;
* *detected*: ``fedcredit ledger verify`` over the ledger and every node log names the message;
* *leaked*: the recipient's log holds a ``received`` record for the planted envelope (its bytes
  got past the node's authentication to a protocol party) -- for a drop, an undelivered envelope
  that verification does not flag.

Every case also checks that the stopped run's ledger still verifies record by record (chain and
signatures intact, ``run_end`` present).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Message
from flwr.serverapp import Grid

from fedcredit import config
from fedcredit.ledger import load_public_key, read_records, verify
from fedcredit.ledger.verify import VerificationReport
from parties.common import transport
from parties.common.exchange import ExchangeHub
from parties.common.grid import InProcessGrid
from parties.in_process import run_scenario_in_process
from protocols.common import signing, wire
from protocols.common.signing import SignedEnvelope
from simulations.attack_cases import AttackResult, attack

N_ROWS = 1000
BANK, CENTRE = "bank", "credit_centre"


# -- the scenario under attack ---------------------------------------------------------------


def _data(work: Path) -> tuple[Path, Path]:
    """The first N_ROWS bank customers of default_credit and the centre's rows for them (CSV)."""
    import numpy as np
    import pandas as pd

    from fedcredit.data.default_credit import load_vertical
    from fedcredit.data.schema import LABEL_COLUMN

    d = work / "data"
    bank_csv, centre_csv = d / "bank.csv", d / "centre.csv"
    if bank_csv.exists() and centre_csv.exists():
        return bank_csv, centre_csv
    d.mkdir(parents=True, exist_ok=True)
    bank, centre = load_vertical("all", scaled=False)
    keep = set(bank.ids[:N_ROWS])
    b = pd.DataFrame(bank.features[:N_ROWS], columns=bank.feature_names)
    b.insert(0, "uscc", bank.ids[:N_ROWS])
    b.insert(1, LABEL_COLUMN, bank.labels[:N_ROWS])
    cm = np.array([u in keep for u in centre.ids])
    c = pd.DataFrame(centre.features[cm], columns=centre.feature_names)
    c.insert(0, "uscc", np.array(centre.ids)[cm])
    b.to_csv(bank_csv, index=False)
    c.to_csv(centre_csv, index=False)
    return bank_csv, centre_csv


def scenario(work: Path, mode: str = "vertical-lr") -> config.Scenario:
    bank_csv, centre_csv = _data(work)
    model = (
        "[lr]\nepochs = 2\nbatch_size = 256\nkey_bits = 1024\ninsecure_test_key = true\n"
        if mode == "vertical-lr"
        else "[secureboost]\nn_trees = 2\nmax_depth = 2\nkey_bits = 1024\ninsecure_test_key = true\n"
    )
    return config.loads(
        f"""
[run]
name = "attack"
mode = "{mode}"
seed = 7
[parties.bank]
role = "bank"
data = "{bank_csv}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre_csv}"
[consent]
mode = "demo"
demo_dir = "{work / "consent-demo"}"
{model}"""
    )


# -- the tampering coordinator ---------------------------------------------------------------

Rewrite = Callable[[str, list[SignedEnvelope]], list[SignedEnvelope]]  # (step, inbox) -> new inbox


@dataclasses.dataclass
class Tamper:
    """Rewrites the inbox of the relayed requests to one node (``target``): ``rewrite(step, inbox)``
    returns what the node gets instead. ``planted`` collects the SHA-256 of every payload the
    coordinator made up or changed, ``dropped`` every envelope it withheld."""

    target: str
    rewrite: Rewrite
    planted: list[str] = dataclasses.field(default_factory=list)
    dropped: list[SignedEnvelope] = dataclasses.field(default_factory=list)
    fired: str = ""  # the step at which the rewrite changed something

    def install(self, grid: Grid, sc: config.Scenario | None = None) -> None:
        """Sit between ``grid`` (in-process or a real SuperLink's) and the coordinator's code."""
        push = grid.push_messages

        def tampered_push(messages):  # noqa: ANN001, ANN202 - Grid.push_messages signature
            return push([self._rewrite(m) for m in messages])

        grid.push_messages = tampered_push  # type: ignore[method-assign]

    def apply(self, step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        """``rewrite`` on one delivery to the target, with the bookkeeping of what changed."""
        new = self.rewrite(step, list(inbox))
        if [e.payload for e in new] == [e.payload for e in inbox] and new == inbox:
            return inbox
        self.fired = self.fired or step
        self.dropped += [e for e in inbox if e not in new]
        self.planted += [hashlib.sha256(e.payload).hexdigest() for e in new if e not in inbox]
        return new

    def _rewrite(self, msg: Message) -> Message:
        if msg.metadata.message_type not in (transport.INIT, transport.STEP, transport.FINISH):
            return msg
        phase, step, params, inbox = transport.read_request(msg.content)
        if not inbox or inbox[0].recipient != self.target:  # the relay knows whom it delivers to
            return msg
        new = self.apply(step, list(inbox))
        if new is inbox:
            return msg
        content = transport.request(
            phase=phase, step=step, params=params, inbox=new, session=transport.read_session(msg.content)
        )
        return Message(
            content,
            dst_node_id=msg.metadata.dst_node_id,
            message_type=msg.metadata.message_type,
            group_id=msg.metadata.group_id,
        )


class TamperingHub(ExchangeHub):
    """The coordinator's exchange hub, handing the target of ``tamper`` what the tamper makes of
    each delivery inside a streamed step (sub-steps ``<phase>/<n>.<m>``)."""

    def __init__(self, tamper: Tamper) -> None:
        super().__init__()
        self.tamper = tamper

    def deliver(self, step: str, recipient: str, envelopes: list[SignedEnvelope]) -> list[SignedEnvelope]:
        return envelopes if recipient != self.tamper.target else self.tamper.apply(step, envelopes)


def at_step(
    phase: str, n: int, fn: Callable[[list[SignedEnvelope]], list[SignedEnvelope]], exchange: int | None = None
) -> Rewrite:
    """Apply ``fn`` to the inbox of step ``phase/n`` only (once); with ``exchange`` m, to the
    delivery of exchange ``phase/n.m`` inside that streamed step."""
    done: list[bool] = []
    name = f"{phase}/{n}" if exchange is None else f"{phase}/{n}.{exchange}"

    def rewrite(step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        if step != name or done or not inbox:
            return inbox
        done.append(True)
        return fn(inbox)

    return rewrite


# -- running a case and reading the verdict from the honest side ------------------------------


@dataclasses.dataclass
class Outcome:
    status: dict
    report: VerificationReport
    tamper: Tamper
    logs: dict[str, list[dict]]  # party -> records of its node log (kind + payload)

    def refused_by(self, party: str) -> list[dict]:
        return [r for r in self.logs.get(party, []) if r["kind"] == "refused"]

    def accepted(self, party: str) -> set[str]:
        return {r["payload"]["sha256"] for r in self.logs.get(party, []) if r["kind"] == "received"}

    @property
    def chain_intact(self) -> bool:
        """The stopped run's ledger verifies record by record up to its run_end."""
        return self.report.first_bad is None and self.report.complete


def run(work: Path, tamper: Tamper, *, mode: str = "vertical-lr") -> Outcome:
    sc = scenario(work, mode)
    out = work / "run"
    hub = TamperingHub(tamper)  # streamed training's deliveries are the coordinator's too
    try:
        status = run_scenario_in_process(sc, out, prepare_grid=lambda g: tamper.install(g, sc), stream=hub)
    finally:
        hub.stop()
    report = verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
    logs = {
        p.parent.name: [{"kind": r.kind, "payload": json.loads(r.payload_text)} for r in read_records(p)]
        for p in (out / "nodes").glob("*/egress.sqlite")
    }
    return Outcome(status, report, tamper, logs)


def verdict(name: str, o: Outcome, what: str) -> AttackResult:
    """The AttackResult of a case that planted or withheld envelopes addressed to ``o.tamper.target``."""
    t = o.tamper
    if not t.fired:
        return AttackResult(name, "coordinator", False, "", "", False, f"{what}: the tamper never fired (case broken)")
    refusals = o.refused_by(t.target)
    leaked = bool(set(t.planted) & o.accepted(t.target))
    flagged = [e for e in o.report.errors if t.target in e or "dropped" in e]
    if refusals and o.status.get("status") == "failed" and o.status.get("party") == t.target:
        reason = refusals[0]["payload"]["reason"]
        caught, by, step = True, t.target, str(o.status.get("step"))
        detail = f"{what}: {t.target} refused it ({reason[:140]})"
    elif t.dropped and any("dropped by the relay" in e for e in o.report.errors):
        caught, by, step = True, "ledger verify", t.fired
        detail = (
            f"{what}: run stopped ({o.status.get('error', '')[:80]}); verify: "
            + next(e for e in o.report.errors if "dropped by the relay" in e)[-160:]
        )
    else:
        caught, by, step = False, "", ""
        detail = f"{what}: not caught (status {o.status.get('status')}, verify errors {flagged[:1]})"
    if not o.chain_intact:
        caught = False
        detail += f"; the stopped run's ledger does NOT verify record by record: {o.report.errors[:1]}"
    return AttackResult(name, "coordinator", caught, by, step, leaked, detail)


# -- what the coordinator plants ---------------------------------------------------------------

COORDINATOR_KEY = Ed25519PrivateKey.generate()  # a coordinator's own, perfectly valid, Ed25519 key


def forge(env: SignedEnvelope, payload: bytes | None = None) -> SignedEnvelope:
    """An envelope "from" ``env.sender`` made by the coordinator: signed with its own key over a
    header it chose (the only key it has), payload its own or the original."""
    fake = dataclasses.replace(env, payload=env.payload if payload is None else payload)
    h = signing.header(
        federation="attack",
        session="?",
        phase=fake.phase,
        step=fake.step,
        sender=fake.sender,
        recipient=fake.recipient,
        seq=fake.seq,
        payload=fake.payload,
    )
    return dataclasses.replace(fake, signature=COORDINATOR_KEY.sign(h))


def swap_field(env: SignedEnvelope, cls: type, field_name: str, value: object) -> SignedEnvelope:
    """``env`` with one field of its message replaced, keeping the sender's signature."""
    msg = wire.decode(env.payload, cls)
    return dataclasses.replace(env, payload=wire.encode(dataclasses.replace(msg, **{field_name: value})))


def _from(inbox: list[SignedEnvelope], sender: str) -> int:
    return next(i for i, e in enumerate(inbox) if e.sender == sender)


def _replace_from(sender: str, fn: Callable[[SignedEnvelope], SignedEnvelope]):  # noqa: ANN202
    def change(inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        i = _from(inbox, sender)
        return inbox[:i] + [fn(inbox[i])] + inbox[i + 1 :]

    return change


# -- the cases -----------------------------------------------------------------------------------


def _forge_case(name: str, phase: str, mode: str, n: int = 1):  # noqa: ANN202
    def case(work: Path) -> AttackResult:
        o = run(work, Tamper(CENTRE, at_step(phase, n, _replace_from(BANK, lambda e: forge(e, e.payload)))), mode=mode)
        return verdict(name, o, f"coordinator posed as the bank to the centre at {phase}/{n} with its own key")

    return attack(name)(case)


_forge_case("coordinator/forge-sender/psi", "align", "vertical-lr")
_forge_case("coordinator/forge-sender/hetero-lr", "hetero_lr", "vertical-lr")
_forge_case("coordinator/forge-sender/secureboost", "secureboost", "secureboost")


@attack("coordinator/key-substitution/paillier")
def paillier_key(work: Path) -> AttackResult:
    from protocols.hetero_lr.messages import LRHello
    from protocols.paillier import generate_keypair

    _, sk = generate_keypair(1024, insecure_test_key=True)  # the coordinator's own Paillier key
    sub = _replace_from(BANK, lambda e: swap_field(e, LRHello, "public_key", sk.public_key.to_bytes()))
    o = run(work, Tamper(CENTRE, _first_in("hetero_lr", sub)))
    return verdict(
        "coordinator/key-substitution/paillier", o, "coordinator swapped the bank's Paillier key for its own"
    )


@attack("coordinator/key-substitution/psi")
def psi_key(work: Path) -> AttackResult:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from protocols.psi.messages import PsiBlinded

    mine = X25519PrivateKey.generate().public_key().public_bytes_raw()
    sub = _replace_from(BANK, lambda e: swap_field(e, PsiBlinded, "channel_key", mine))
    o = run(work, Tamper(CENTRE, _first_in("align", sub)))
    return verdict("coordinator/key-substitution/psi", o, "coordinator swapped the bank's PSI sealing key for its own")


def _first_in(phase: str, fn: Callable[[list[SignedEnvelope]], list[SignedEnvelope]]) -> Rewrite:
    """Apply ``fn`` to the first inbox of ``phase`` that holds an envelope from the bank."""
    done: list[bool] = []

    def rewrite(step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        if done or not step.startswith(phase + "/") or not any(e.sender == BANK for e in inbox):
            return inbox
        done.append(True)
        return fn(inbox)

    return rewrite


@attack("coordinator/replay-step/hetero-lr")
def replay_step(work: Path) -> AttackResult:
    seen: list[SignedEnvelope] = []

    def rewrite(step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        from_bank = [e for e in inbox if e.sender == BANK]
        if not step.startswith("hetero_lr/") or not from_bank:
            return inbox
        if len(seen) < 2:
            seen.append(from_bank[0])
            return inbox
        if len(seen) == 2:  # third delivery: hand back the bank's first envelope instead
            seen.append(from_bank[0])
            i = _from(inbox, BANK)
            return inbox[:i] + [seen[0]] + inbox[i + 1 :]
        return inbox

    t = Tamper(CENTRE, rewrite)
    o = run(work, t)
    t.planted = []  # a replay plants no new bytes; accepting it at all is the leak
    accepted_twice = sum(1 for r in o.logs.get(CENTRE, []) if r["kind"] == "received" and r["payload"]["seq"] == 0)
    r = verdict("coordinator/replay-step/hetero-lr", o, "coordinator replayed the bank's first hetero-LR envelope")
    return dataclasses.replace(r, leaked=accepted_twice > 1)


@attack("coordinator/replay-run/hetero-lr")
def replay_run(work: Path) -> AttackResult:
    captured: list[SignedEnvelope] = []

    def capture(step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        if step.startswith("hetero_lr/") and not captured:
            captured.extend(e for e in inbox if e.sender == BANK)
        return inbox

    run(work / "earlier", Tamper(CENTRE, capture))  # an honest earlier run, recorded by the coordinator
    old = captured[0]
    sub = _first_in("hetero_lr", _replace_from(BANK, lambda e: old))
    o = run(work / "later", Tamper(CENTRE, sub))
    return verdict(
        "coordinator/replay-run/hetero-lr", o, "coordinator replayed the bank's envelope from an earlier run"
    )


@attack("coordinator/alter-byte/hetero-lr")
def alter_byte(work: Path) -> AttackResult:
    def flip(e: SignedEnvelope) -> SignedEnvelope:
        b = bytearray(e.payload)
        b[-1] ^= 0x01
        return dataclasses.replace(e, payload=bytes(b))

    o = run(work, Tamper(CENTRE, at_step("hetero_lr", 2, _replace_from(BANK, flip))))
    return verdict("coordinator/alter-byte/hetero-lr", o, "coordinator flipped one bit of a bank payload")


@attack("coordinator/drop/hetero-lr")
def drop(work: Path) -> AttackResult:
    def withhold(inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        return [e for e in inbox if e.sender != BANK]

    o = run(work, Tamper(CENTRE, at_step("hetero_lr", 2, withhold)))
    return verdict("coordinator/drop/hetero-lr", o, "coordinator dropped the bank's envelope to the centre")


@attack("coordinator/inject/hetero-lr")
def inject(work: Path) -> AttackResult:
    def add(inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        real = inbox[_from(inbox, BANK)]
        fake = SignedEnvelope(BANK, CENTRE, real.payload[:-1] + b"\x00", real.phase, real.step, real.seq + 1, bytes(64))
        return [*inbox, fake]

    o = run(work, Tamper(CENTRE, at_step("hetero_lr", 2, add)))
    return verdict("coordinator/inject/hetero-lr", o, "coordinator injected an envelope no party sent")


# -- inside a streamed epoch: the hub is the coordinator's, and as untrusted -----------------------
# Step hetero_lr/1 streams the first epoch; exchange 3 is the first batch's masked decryptions.


@attack("coordinator/stream-alter/hetero-lr")
def stream_alter(work: Path) -> AttackResult:
    def flip(e: SignedEnvelope) -> SignedEnvelope:
        b = bytearray(e.payload)
        b[len(b) // 2] ^= 0x01
        return dataclasses.replace(e, payload=bytes(b))

    o = run(work, Tamper(CENTRE, at_step("hetero_lr", 1, _replace_from(BANK, flip), exchange=3)))
    return _refused_in_stream(verdict("coordinator/stream-alter/hetero-lr", o, "hub flipped a bit mid-epoch"), o)


def _refused_in_stream(r: AttackResult, o: Outcome) -> AttackResult:
    """Planted bytes inside a stream must be refused by the recipient's node before its party
    sees them; a run that only stopped later (the party computed on them) is not caught."""
    if o.refused_by(o.tamper.target):
        return r
    return dataclasses.replace(r, refused_or_detected=False, detail=r.detail + f"; {o.tamper.target} never refused it")


@attack("coordinator/stream-drop/hetero-lr")
def stream_drop(work: Path) -> AttackResult:
    o = run(work, Tamper(CENTRE, at_step("hetero_lr", 1, lambda inbox: [e for e in inbox if e.sender != BANK], 4)))
    return verdict("coordinator/stream-drop/hetero-lr", o, "hub withheld the bank's envelope mid-epoch")


@attack("coordinator/stream-replay/hetero-lr")
def stream_replay(work: Path) -> AttackResult:
    kept: list[SignedEnvelope] = []

    def rewrite(step: str, inbox: list[SignedEnvelope]) -> list[SignedEnvelope]:
        if step == "hetero_lr/1.2":
            kept.extend(inbox)  # the bank's partials of the first batch...
        if step == "hetero_lr/1.5" and kept:
            return [dataclasses.replace(kept[0]), *inbox]  # ...handed over again a batch later
        return inbox

    t = Tamper(CENTRE, rewrite)
    o = run(work, t)
    t.planted = []  # a replay plants no new bytes; accepting it a second time is the leak
    again = kept[0].seq if kept else -1
    accepted_twice = sum(1 for r in o.logs.get(CENTRE, []) if r["kind"] == "received" and r["payload"]["seq"] == again)
    r = verdict("coordinator/stream-replay/hetero-lr", o, "hub replayed an earlier exchange's bank envelope")
    return _refused_in_stream(dataclasses.replace(r, leaked=accepted_twice > 1), o)


# -- joint inference: the coordinator in the middle of a loan decision -------------------------


def _inference_scenario(work: Path) -> config.Scenario:
    """A trained model (in ``work/train``) and an inference run scoring 30 consenting applicants."""
    import pandas as pd

    from fedcredit.data.schema import LABEL_COLUMN

    bank_csv, centre_csv = _data(work)
    train = work / "train"
    if not (train / "status.json").exists():
        status = run_scenario_in_process(scenario(work), train)
        if status.get("status") != "completed":
            raise RuntimeError(f"training for the inference attack failed: {status}")
    apps = pd.read_csv(bank_csv, dtype={"uscc": str}).iloc[:30].drop(columns=[LABEL_COLUMN])
    apps.to_csv(work / "applicants.csv", index=False)
    rows = ["uscc,bank,purpose,scope,valid_from,valid_until,revoked_at"]
    rows += [f"{u},bank,loan_decision,*,2024-01-01,2026-12-31," for u in apps["uscc"]]
    (work / "consents.csv").write_text("\n".join(rows) + "\n")
    return config.loads(
        f"""
[run]
name = "attack-inference"
mode = "inference"
purpose = "loan_decision"
[parties.bank]
role = "bank"
data = "{bank_csv}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre_csv}"
[inference]
model_dir = "{train}"
applicants = "{work / "applicants.csv"}"
batch_size = 10
[consent]
mode = "demo"
demo_dir = "{work / "consent-demo"}"
registry = "{work / "consents.csv"}"
at = "2025-06-01"
"""
    )


def run_inference(work: Path, tamper: Tamper) -> Outcome:
    sc = _inference_scenario(work)
    out = work / "run"
    hub = TamperingHub(tamper)  # streamed training's deliveries are the coordinator's too
    try:
        status = run_scenario_in_process(sc, out, prepare_grid=lambda g: tamper.install(g, sc), stream=hub)
    finally:
        hub.stop()
    report = verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
    logs = {
        p.parent.name: [{"kind": r.kind, "payload": json.loads(r.payload_text)} for r in read_records(p)]
        for p in (out / "nodes").glob("*/egress.sqlite")
    }
    return Outcome(status, report, tamper, logs)


@attack("coordinator/forge-sender/inference")
def forge_inference(work: Path) -> AttackResult:
    """The coordinator poses as the bank to the centre to query applicants' partial scores."""
    t = Tamper(CENTRE, _first_in("inference", _replace_from(BANK, lambda e: forge(e, e.payload))))
    o = run_inference(work, t)
    return verdict(
        "coordinator/forge-sender/inference", o, "coordinator posed as the bank to the centre in joint inference"
    )


@attack("coordinator/key-substitution/inference")
def inference_key(work: Path) -> AttackResult:
    """The coordinator swaps the bank's inference X25519 key for its own (to sit in the middle)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from protocols.inference.messages import InferenceKey, InferenceRequest

    mine = X25519PrivateKey.generate().public_key().public_bytes_raw()

    def swap(e: SignedEnvelope) -> SignedEnvelope:
        kind = wire.message_type(e.payload)
        cls = {"InferenceKey": InferenceKey, "InferenceRequest": InferenceRequest}[kind]
        return swap_field(e, cls, "public_key", mine)

    o = run_inference(work, Tamper(CENTRE, _first_in("inference", _replace_from(BANK, swap))))
    return verdict(
        "coordinator/key-substitution/inference", o, "coordinator swapped the bank's inference key for its own"
    )


# -- horizontal: the coordinator picks the SecAgg+ parameters ---------------------------------

HORIZONTAL = """
[run]
name = "attack-horizontal"
mode = "horizontal"
seed = 42
[parties.bank_a]
role = "bank"
data = "default_credit"
[parties.bank_b]
role = "bank"
data = "default_credit"
[parties.bank_c]
role = "bank"
data = "default_credit"
[horizontal]
aggregation = "secagg+"
rounds = 2
model = "lr"
evaluation = "none"
baseline = false
timeout = 60
"""


def _push_rewrite(rewrite: Callable[[Message], tuple[Message, str] | None]):  # noqa: ANN202
    """Wrap the grid's ``push_messages``: ``rewrite(m)`` returns ``(new message, what)`` for a message
    the coordinator tampers with (``what`` is recorded in ``fired``), or None to pass it on."""
    fired: list[str] = []

    def install(grid: InProcessGrid) -> None:
        push = grid.push_messages

        def tampered(messages):  # noqa: ANN001, ANN202
            out = []
            for m in messages:
                done = rewrite(m)
                if done is not None:
                    m, what = done
                    fired.append(what)
                out.append(m)
            return push(out)

        grid.push_messages = tampered  # type: ignore[method-assign]

    return install, fired


def _secagg_setup_rewrite(change: Callable[[dict], dict]):  # noqa: ANN202
    """Rewrite the SecAgg+ setup-stage config the coordinator sends every bank."""
    from flwr.app import ConfigRecord
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    from parties.horizontal import flower_legacy as legacy

    def rewrite(m: Message) -> tuple[Message, str] | None:
        if legacy.secagg_stage(m.metadata.message_type, m.content) != "setup":
            return None
        cfg = dict(m.content.config_records[RECORD_KEY_CONFIGS])
        m.content.config_records[RECORD_KEY_CONFIGS] = ConfigRecord(change(cfg))
        return m, "secagg+ setup"

    return _push_rewrite(rewrite)


def _horizontal_case(name: str, change: Callable[[dict], dict], what: str) -> AttackResult:
    def case(work: Path) -> AttackResult:
        sc = config.loads(HORIZONTAL)
        install, fired = _secagg_setup_rewrite(change)
        captured: list[tuple[str, str]] = []

        def tap(nid: int, req: Message, rep: Message) -> None:  # what each bank answered
            if rep.has_error():
                captured.append((str(nid), rep.error.reason or ""))

        out = work / "run"
        status = run_scenario_in_process(sc, out, tap=tap, prepare_grid=install)
        refusals = [r for _, r in captured if "refusing to contribute" in r]
        # the protected value: an individual bank's masked update never left a bank if every bank
        # refused at the setup stage (nothing is masked before the share-keys stage)
        report = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
        caught = (
            bool(fired)
            and len(refusals) == 3
            and status.get("status") == "failed"
            and str(status.get("party", "")).startswith("bank_")
            and report.first_bad is None
            and report.complete  # the stopped run's ledger still verifies
        )
        by = "bank_a, bank_b, bank_c" if caught else ""
        detail = f"{what}: " + (refusals[0][:200] if refusals else f"no bank refused (status {status.get('status')})")
        detail += f"; status.json: {str(status.get('error', ''))[:160]}"
        return AttackResult(name, "coordinator", caught, by, "secagg+ setup" if caught else "", not caught, detail)

    return case


attack("coordinator/secagg-threshold-1/horizontal")(
    _horizontal_case(
        "coordinator/secagg-threshold-1/horizontal",
        lambda cfg: {**cfg, "threshold": 1},
        "coordinator set the SecAgg+ reconstruction threshold to 1",
    )
)
attack("coordinator/two-bank-round/horizontal")(
    _horizontal_case(
        "coordinator/two-bank-round/horizontal",
        lambda cfg: {**cfg, "sample_num": 2, "share_num": 2, "threshold": 2},
        "coordinator ran a SecAgg+ round with two banks",
    )
)


# -- horizontal CKKS: the release as a decryption oracle --------------------------------------

HORIZONTAL_CKKS = HORIZONTAL.replace('aggregation = "secagg+"', 'aggregation = "ckks"').replace(
    'name = "attack-horizontal"', 'name = "attack-ckks"'
)


def _release_rewrite(change: Callable[[object], object]):  # noqa: ANN202
    """Rewrite the coordinator's release request (what it asks a bank to decrypt)."""
    from fedcredit.horizontal.messages import ReleaseRequest

    return _query_rewrite("horizontal_release", ReleaseRequest, change)


def _single_upload(req):  # noqa: ANN001, ANN202
    """Ask to decrypt bank_a's own upload alone (its ciphertexts as the 'aggregate')."""
    first = req.uploads[0]
    return dataclasses.replace(req, chunks=list(first["chunks"]), uploads=[first])


def _single_upload_padded(req):  # noqa: ANN001, ANN202
    """bank_a's upload plus two the coordinator made itself (fresh ciphertexts it attributes to
    bank_b and bank_c; it cannot sign them with their node keys)."""
    first = req.uploads[0]
    fakes = [{**u, "chunks": list(first["chunks"]), "sig": COORDINATOR_KEY.sign(b"x" * 32)} for u in req.uploads[1:3]]
    return dataclasses.replace(req, chunks=list(first["chunks"]), uploads=[first, *fakes])


def _ckks_case(name: str, change, what: str) -> AttackResult:  # noqa: ANN001
    def case(work: Path) -> AttackResult:
        sc = config.loads(HORIZONTAL_CKKS)
        install, fired = _release_rewrite(change)
        out = work / "run"
        status = run_scenario_in_process(sc, out, prepare_grid=install)
        report = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
        error = str(status.get("error", ""))
        refused = "refuses to decrypt" in error
        released = (out / "model").exists() and status.get("status") == "completed"
        caught = bool(fired) and refused and status.get("status") == "failed" and report.first_bad is None
        detail = f"{what}: " + (error[error.find("bank '") :][:220] if refused else f"status {status.get('status')}")
        return AttackResult(
            name, "coordinator", caught, "bank_a" if caught else "", "horizontal_release", released, detail
        )

    return case


attack("coordinator/ckks-single-upload/horizontal")(
    _ckks_case(
        "coordinator/ckks-single-upload/horizontal",
        _single_upload,
        "coordinator asked the releasing bank to decrypt one bank's CKKS upload",
    )
)
attack("coordinator/ckks-forged-uploads/horizontal")(
    _ckks_case(
        "coordinator/ckks-forged-uploads/horizontal",
        _single_upload_padded,
        "coordinator padded one bank's CKKS upload with two uploads it made itself",
    )
)


def _query_rewrite(action: str, cls: type, change: Callable[[object], object]):  # noqa: ANN202
    """Rewrite the coordinator's ``query.<action>`` payload (a horizontal key-step message)."""
    from parties.horizontal import transport as ht

    def rewrite(m: Message) -> tuple[Message, str] | None:
        if not m.metadata.message_type.endswith("." + action):
            return None
        return ht.query_message(m.metadata.dst_node_id, action, change(ht.read_payload(m, cls))), action

    return _push_rewrite(rewrite)


@attack("coordinator/key-substitution/ckks")
def ckks_key(work: Path) -> AttackResult:
    """The coordinator swaps bank_b's X25519 hand-over key for its own, to receive the CKKS secret key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from fedcredit.horizontal.messages import KeygenRequest

    mine = X25519PrivateKey.generate().public_key().public_bytes_raw()

    def swap(req):  # noqa: ANN001, ANN202
        return dataclasses.replace(req, recipient_publics=[mine, *req.recipient_publics[1:]])

    install, fired = _query_rewrite("horizontal_keygen", KeygenRequest, swap)
    sc = config.loads(HORIZONTAL_CKKS)
    out = work / "run"
    status = run_scenario_in_process(sc, out, prepare_grid=install)
    report = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
    error = str(status.get("error", ""))
    refused = "not signed by its node key" in error
    caught = bool(fired) and refused and status.get("status") == "failed" and report.first_bad is None
    detail = "coordinator swapped bank_b's X25519 key in the CKKS key hand-over: " + (
        error[error.find("bank '") :][:200] if refused else f"status {status.get('status')}: {error[:200]}"
    )
    # the secret key is sealed only after the check, so nothing was sealed to the coordinator's key
    leaked = status.get("status") == "completed"
    return AttackResult(
        "coordinator/key-substitution/ckks",
        "coordinator",
        caught,
        "bank_a" if caught else "",
        "horizontal_keygen" if caught else "",
        leaked,
        detail,
    )
