"""Node-side runtime: who this node is, its data, its persisted protocol state, its signed log.

It is also the node's authentication boundary: :meth:`NodeRuntime.accept_inbox` verifies every
envelope the coordinator delivers (sender's signature against the operator-configured peer keys,
session, phase, stream sequence number) and logs it as received, or logs it as refused and stops,
before any party sees it; :meth:`NodeRuntime.seal_outbox` signs and numbers what leaves.

Everything a node keeps between Flower messages lives in ``context.state`` (node-local; in
deployment the SuperNode holds it, in simulation Flower keeps it per virtual node). Data is
re-read from the node's own storage on each message and cached per process, because Flower may
run consecutive messages of one node in different processes.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context

from fedcredit.config import PartySpec, Scenario
from fedcredit.data.loaders import PartyData, load_party_data
from fedcredit.data.readers import ReadOptions
from parties.common import peers as peer_config
from parties.common.roles import resolve_party
from protocols.common import signing
from protocols.common.party import Envelope
from protocols.common.signing import EnvelopeRefused, SignedEnvelope, StreamGuard

log = logging.getLogger(__name__)
STATE = "fedcredit"


@functools.lru_cache(maxsize=8)
def _cached_data(source: str, role: str, party: str, seed: int, read: ReadOptions) -> PartyData:
    return load_party_data(source, role, party=party, part="all", seed=seed, scaled=False, opts=read)


class NodeRuntime:
    def __init__(self, context: Context, scenario: Scenario, out_dir: Path | None):
        self.context = context
        self.scenario = scenario
        self.spec: PartySpec = resolve_party(context, scenario)
        self.out_dir = out_dir
        self.name, self.role = self.spec.name, self.spec.role
        cfg = context.node_config
        if "node-dir" in cfg:
            self.dir = Path(str(cfg["node-dir"]))
        elif out_dir is not None:
            self.dir = Path(out_dir) / "nodes" / self.name
        else:
            raise RuntimeError(f"node {self.name}: no 'node-dir' in node_config and no run directory")
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- persisted state (node-local) ---------------------------------------------------
    def _record(self) -> ConfigRecord:
        records = self.context.state.config_records
        if STATE not in records:
            records[STATE] = ConfigRecord()
        return records[STATE]

    def get(self, key: str, default: object = None) -> object:
        rec = self._record()
        return rec[key] if key in rec else default

    def get_bytes(self, key: str) -> bytes | None:
        """A bytes value this node stored (None if it stored nothing under ``key``)."""
        value = self.get(key)
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"node {self.name}: state {key!r} holds {type(value).__name__}, not bytes")
        return value

    def put(self, key: str, value: str | bytes | int | float | bool) -> None:
        self._record()[key] = value

    # -- data ---------------------------------------------------------------------------
    def data(self) -> PartyData:
        source = self.scenario.resolve(self.spec.data)
        # the party table's id_column/label_column/encoding/... (issue 17): how to read its own file
        read = ReadOptions.from_mapping(self.spec.options, where=f"[parties.{self.name}]")
        return _cached_data(source, self.role, self.name, self.scenario.seed, read)

    # -- identity and egress log ------------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        cfg = self.context.node_config
        if "egress-key" in cfg:  # deployment: operator-provisioned key (fedcredit keys init)
            from fedcredit.ledger import load_private_key

            return load_private_key(str(cfg["egress-key"]))
        provisioned = peer_config.provisioned_key(self.out_dir, self.name)
        if provisioned is not None:  # simulation: the driver provisioned it as the operator would
            return provisioned
        pem = self.get_bytes("egress_key_pem")
        if pem is None:  # simulation: the node makes its own key on first contact
            key = Ed25519PrivateKey.generate()
            self.put(
                "egress_key_pem",
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            return key
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise TypeError(f"node {self.name}: the stored egress key is not an Ed25519 key")
        return loaded

    @property
    def egress_path(self) -> Path:
        return self.dir / "egress.sqlite"

    def _log(self):  # noqa: ANN202 - fedcredit.ledger.EgressLog, imported lazily
        from fedcredit.ledger import EgressLog

        run_id = str(self.get("run_id"))
        return EgressLog.create(self.egress_path, self.signing_key(), run_id=run_id, node=self.name)

    def log_egress(self, step: str, outbox: list[Envelope], summary_bytes: bytes | None) -> None:
        """Sign and record every payload this node is about to send (never the payload itself).

        ``summary_bytes`` None: an exchange inside a streamed step, which sends the coordinator
        no summary (:mod:`parties.common.exchange`)."""
        elog = self._log()
        try:
            with elog.batch():  # one commit per step
                for env in outbox:
                    seq = env.seq if isinstance(env, SignedEnvelope) else None
                    elog.record_sent(kind=env.kind, recipient=env.recipient, step=step, payload=env.payload, seq=seq)
                if summary_bytes is not None:
                    elog.record_sent(kind="Summary", recipient="coordinator", step=step, payload=summary_bytes)
        finally:
            elog.close()

    def log_failure(self, step: str, reason: str) -> None:
        """Record in the node's own log that it was served ``step`` and failed it (best effort)."""
        if self.get("run_id") is None:
            return
        elog = self._log()
        try:
            elog.record_failed(step=step, reason=reason)
        finally:
            elog.close()

    # -- transparency log: co-sign the coordinator's tree heads (fedcredit.ledger.cosign) -------
    def coordinator_key(self, announced: str) -> str:
        """The coordinator key this node checks heads with: its operator's (node_config
        ``coordinator-pubkey``) if configured, else the key of the first head it saw, pinned for the run."""
        cfg = self.context.node_config
        pinned = str(cfg["coordinator-pubkey"]) if "coordinator-pubkey" in cfg else self.get("tlog_coordinator")
        if pinned is None:
            self.put("tlog_coordinator", str(announced))
            return str(announced)
        return str(pinned)

    def last_head(self):  # noqa: ANN201 - (SignedTreeHead, coordinator key hex) | None, imported lazily
        """The last tree head this node co-signed in this run, from its own node log (so it
        survives a restarted node or a resumed run, whose Flower state starts empty)."""
        from fedcredit.ledger import read_records
        from fedcredit.ledger.cosign import head_from
        from fedcredit.ledger.records import EGRESS_COSIGNED

        if self.get("run_id") is None or not self.egress_path.exists():
            return None
        recs = read_records(self.egress_path)
        if not recs or recs[0].run_id != self.get("run_id"):
            return None
        last = next((r for r in reversed(recs) if r.kind == EGRESS_COSIGNED), None)
        if last is None:
            return None
        p = last.payload
        return head_from(p["head"]), str(p["coordinator_pubkey"])

    def cosign(self, announcement: dict, step: str) -> None:
        """Check the announced head (signature, consistency with the last head held, inclusion of
        this node's own step records) and keep it, co-signed, in the node log; raises if it fails."""
        from fedcredit.ledger import read_records
        from fedcredit.ledger.cosign import coordinator_key_hex, own_since_last_head, witness
        from fedcredit.ledger.keys import public_key_hex

        held = self.last_head()
        last, pinned = (held[0], held[1]) if held is not None else (None, None)
        if pinned is not None and self.get("tlog_coordinator") is None:
            self.put("tlog_coordinator", pinned)  # the key this node already co-signed heads of
        coordinator = self.coordinator_key(str(announcement.get("coordinator_pubkey", "")))
        own = own_since_last_head(read_records(self.egress_path)) if self.egress_path.exists() else {}
        key = self.signing_key()
        head, cosig = witness(
            announcement,
            party=self.name,
            key=key,
            coordinator=coordinator_key_hex(coordinator),
            last_head=last,
            own_sent=own,
        )
        elog = self._log()
        try:
            elog.record_cosigned(
                step=step, head=head.to_dict(), coordinator_pubkey=coordinator, cosignature=cosig.signature
            )
        finally:
            elog.close()
        log.debug("node %s co-signed tree head %d (%s)", self.name, head.size, public_key_hex(key)[:8])

    def end_log(self, status: str) -> None:
        """Write the node log's signed end record (after the run's final head, or a refusal of it)."""
        if self.get("run_id") is None:
            return
        held = self.last_head()
        size = held[0].size if held is not None else None
        elog = self._log()
        try:
            elog.record_end(status=status, head_size=size)
        finally:
            elog.close()

    # -- envelope authentication (protocols.common.signing) ------------------------------
    def hello_nonce(self) -> str:
        """A fresh nonce for this run's session, made at ``hello`` and kept in node state."""
        nonce = secrets.token_hex(16)
        self.put("hello_nonce", nonce)
        return nonce

    def session(self, announced: dict) -> str:
        """The session id of this run from the coordinator's announcement, checked to hold this
        node's own hello nonce and this run's id, and to be the same for the whole run."""
        nonces, run_id = announced.get("nonces"), announced.get("run_id")
        mine = self.get("hello_nonce")
        if not isinstance(nonces, dict) or mine is None or nonces.get(self.name) != mine:
            raise EnvelopeRefused(
                f"node {self.name}: the coordinator's session announcement does not hold this node's hello "
                "nonce (another run's session, or no hello in this run)"
            )
        if run_id != self.get("run_id"):
            raise EnvelopeRefused(f"node {self.name}: session announced for run {run_id!r}, not this run")
        sid = signing.session_id(str(run_id), {str(k): str(v) for k, v in nonces.items()})
        known = self.get("session")
        if known is None:
            self.put("session", sid)
        elif known != sid:
            raise EnvelopeRefused(f"node {self.name}: the coordinator changed the session's nonces mid-run")
        return sid

    def _guard(self) -> StreamGuard:
        raw = self.get("streams")
        if raw is None:
            return StreamGuard()
        d = json.loads(str(raw))
        return StreamGuard(sent=d["sent"], expected=d["expected"])

    def _save_guard(self, guard: StreamGuard) -> None:
        self.put("streams", json.dumps({"sent": guard.sent, "expected": guard.expected}, sort_keys=True))

    @property
    def federation(self) -> str:
        return self.scenario.name

    def accept_inbox(self, phase: str, step: str, inbox: list[Envelope], announced: dict) -> list[Envelope]:
        """The envelopes of ``inbox`` once each is verified, in order; refuses the step otherwise.

        Accepted envelopes are logged as received, a refused one as refused with the reason
        (then :class:`EnvelopeRefused` stops this node's step, and the coordinator the run).
        """
        if not inbox:
            return []
        peers = peer_config.load_peers(peer_config.peers_path(dict(self.context.node_config), self.out_dir))
        guard = self._guard()
        elog = self._log()
        accepted: list[Envelope] = []
        try:
            with elog.batch():  # one commit per step, also when an envelope is refused
                accepted = self._verify_all(elog, phase, step, inbox, announced, peers, guard)
        finally:
            elog.close()
        self._save_guard(guard)
        return accepted

    def _verify_all(
        self,
        elog: object,
        phase: str,
        step: str,
        inbox: list[Envelope],
        announced: dict,
        peers: dict,
        guard: StreamGuard,
    ) -> list[Envelope]:
        """Verify ``inbox`` in order, logging each envelope as received, or as refused and raise."""
        from fedcredit.ledger import EgressLog

        assert isinstance(elog, EgressLog)
        accepted: list[Envelope] = []
        for env in inbox:
            try:
                sid = self.session(announced)
                checked = signing.verify(
                    env, me=self.name, peers=peers, federation=self.federation, session=sid, phase=phase
                )
                guard.accept(checked)
            except EnvelopeRefused as exc:
                sent_step, seq = (env.step, env.seq) if isinstance(env, SignedEnvelope) else ("", -1)
                elog.record_refused(
                    sender=env.sender, step=step, sent_step=sent_step, seq=seq, payload=env.payload, reason=str(exc)
                )
                raise
            elog.record_received(
                kind=_kind(checked),
                sender=checked.sender,
                step=step,
                sent_step=checked.step,
                seq=checked.seq,
                payload=checked.payload,
            )
            accepted.append(checked.plain())
        return accepted

    def fail_if_injected(self, step: str) -> None:
        """Fault injection for resilience tests: raise at ``step`` (a relay step or an exchange
        inside a streamed one) when the party's scenario options say ``fail_at_step`` = it."""
        if self.spec.options.get("fail_at_step") == step:
            raise RuntimeError(f"injected failure at {step} (scenario option fail_at_step)")

    def stream_ca(self) -> bytes | None:
        """The CA this node's operator trusts for the coordinator's TLS endpoints (``dataplane-ca``)."""
        path = self.context.node_config.get("dataplane-ca")
        return Path(str(path)).read_bytes() if path else None

    def seal_outbox(self, phase: str, step: str, outbox: list[Envelope], announced: dict) -> list[Envelope]:
        """``outbox`` signed by this node's key, each with the next seq of its stream."""
        if not outbox:
            return []
        sid, key, guard = self.session(announced), self.signing_key(), self._guard()
        sealed: list[Envelope] = []
        for env in outbox:
            if env.sender != self.name:
                raise EnvelopeRefused(f"node {self.name}: a party tried to send as {env.sender!r}")
            seq = guard.next_out(env.recipient)
            sealed.append(
                signing.sign(key, env, federation=self.federation, session=sid, phase=phase, step=step, seq=seq)
            )
        self._save_guard(guard)
        return sealed


def _kind(env: Envelope) -> str:
    """The message type an envelope claims (a payload that is not a wire message is still logged)."""
    try:
        return env.kind
    except ValueError:
        return "?"
