"""A streaming data plane under the relay: one gRPC stream per node, Flower stays the control plane.

Why: every relay step over Flower is a SuperLink round trip (push, the SuperNode's poll, a
ClientApp process, pull): ~2 s in deployment, and hetero-LR needs ``3 * batches + 4`` steps per
epoch. Here the coordinator's ServerApp runs a small gRPC server (TLS, a certificate the
federation CA signed); over Flower it sends each node one *invitation* (address, run, session,
one-time token). The node's long-lived service (:mod:`parties.common.node_service`) dials **out**
to it, trusting only the CA of its *own operator's* configuration (never one the coordinator
sends), and proves who it is by signing (token, run, session, address, party) with its
provisioned Ed25519 node key; the coordinator checks that signature against the party's
provisioned key and spends the token. From then on the coordinator's :class:`DataPlaneGrid` sends
that node's messages down the stream and the node answers each one with the *same* handler,
persisted Context and egress log as a message forwarded by Flower.

What does not change (docs/protocols/coordinator.md): the relay, the ledger records, the
node-signed envelopes and the nodes' egress logs are exactly as over Flower -- the stream carries
Flower messages as their deflated object trees, the bytes Flower's own transport ships. The
coordinator still sees, and may drop, delay or alter, every message; authenticity is the
envelopes' (an altered envelope is refused by its recipient, as over Flower). A node without a
live stream, a refused invitation or a stream that broke falls back to Flower unchanged; a stream
that breaks *during* a message gives an error reply naming the party (the step may have run, so
it is never re-sent).

Wire format: gRPC bidi stream ``/fedcredit.DataPlane/Connect`` of raw bytes (generic handlers, no
.proto). Each message is one frame of :mod:`parties.common.local_channel` (8-byte header length,
JSON header, blobs). The first frame up is the node's hello, the first frame down the verdict.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flwr.app import ConfigRecord, Error, Message, RecordDict
from flwr.serverapp import Grid

from parties.common import local_channel as lc
from parties.common import transport
from parties.common.delegating import DelegatingGrid

log = logging.getLogger(__name__)

PROTOCOL = "fedcredit-dataplane/1"
METHOD = "/fedcredit.DataPlane/Connect"
INVITE = "query.fc_dataplane"  # the Flower message type of an invitation (handled by the node service)
RECORD = "dataplane"  # the ConfigRecord carrying an invitation / its answer
# control-plane messages, always through Flower: introduction, a phase's start and finish, the final head
CONTROL_TYPES = frozenset({transport.HELLO, transport.INIT, transport.FINISH, transport.CLOSE})
ERROR_CODE = 1003  # Flower error code of a reply the data plane could not deliver
# Paillier ciphertexts of a 300,000-row batch are hundreds of MB: no gRPC size cap below int32
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class DataPlaneError(RuntimeError):
    """The data plane refused a node, or a stream broke; the message names the party."""


# -- frames <-> bytes ----------------------------------------------------------------------------
def encode_frame(frame: lc.Frame) -> bytes:
    return lc.frame_head(frame) + b"".join(frame.blobs)


def decode_frame(raw: bytes) -> lc.Frame:
    """A frame from its bytes; :class:`ChannelError` if they are not exactly one frame."""
    if len(raw) < 8:
        raise lc.ChannelError(f"truncated data-plane frame ({len(raw)} bytes)")
    (n,) = struct.unpack(">Q", raw[:8])
    if n > lc.MAX_HEADER or 8 + n > len(raw):
        raise lc.ChannelError(f"data-plane frame header of {n} bytes does not fit the frame")
    try:
        header = json.loads(raw[8 : 8 + n])
    except json.JSONDecodeError as exc:
        raise lc.ChannelError(f"malformed data-plane frame header: {exc}") from None
    if not isinstance(header, dict):
        raise lc.ChannelError("malformed data-plane frame header: not an object")
    sizes = header.pop("blob_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise lc.ChannelError("malformed data-plane frame header: bad blob sizes")
    blobs, pos = [], 8 + n
    for size in sizes:
        blobs.append(raw[pos : pos + size])
        pos += size
    if pos != len(raw):
        raise lc.ChannelError(f"data-plane frame of {len(raw)} bytes, its header says {pos}")
    return lc.Frame(header, blobs)


def _rpc_code(exc: grpc.RpcError) -> object:
    """The status code of a gRPC error (a server-side stream error may carry none)."""
    code = getattr(exc, "code", None)
    return code() if callable(code) else type(exc).__name__


def _json_frame(header: dict[str, Any]) -> bytes:
    return encode_frame(lc.Frame(header, []))


def serve_stream(
    method: str,
    handler: Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]],
    host: str,
    *,
    workers: int,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    error: type[Exception] = DataPlaneError,
) -> tuple[grpc.Server, str]:
    """A started gRPC server whose one bidi-stream ``method`` (``/service/Name``) of raw bytes is
    ``handler`` (generic handler, no .proto), on an ephemeral port of ``host``: TLS with
    ``cert_pem``/``key_pem``, plaintext without. Returns it and its ``host:port``; ``error`` if the
    port cannot be bound. The data plane and the exchange hub (:mod:`parties.common.exchange`)."""
    service, name = method.strip("/").split("/")
    server = grpc.server(ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {name: grpc.stream_stream_rpc_method_handler(handler)}),)
    )
    if cert_pem is not None and key_pem is not None:
        port = server.add_secure_port(f"{host}:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    else:
        port = server.add_insecure_port(f"{host}:0")
    if not port:
        raise error(f"cannot bind a {service} server on {host}")
    server.start()
    return server, f"{host}:{port}"


# -- invitation and the node's proof of identity ---------------------------------------------------
@dataclass(frozen=True)
class Invitation:
    """What the coordinator sends a node over Flower (TLS to the SuperLink, SuperNode-authenticated)."""

    address: str  # host:port of the coordinator's data-plane server
    run_id: int  # the Flower run
    session: str  # this data-plane server's random session id
    token: str  # one-time, for this party only
    party: str  # whom the coordinator believes it invites

    def to_record(self) -> RecordDict:
        return RecordDict({RECORD: ConfigRecord(dict(asdict(self)))})

    @classmethod
    def from_message(cls, message: Message) -> Invitation:
        rec = message.content.config_records.get(RECORD)
        if rec is None:
            raise DataPlaneError("invitation without a 'dataplane' record")
        try:
            return cls(
                address=str(rec["address"]),
                run_id=int(str(rec["run_id"])),
                session=str(rec["session"]),
                token=str(rec["token"]),
                party=str(rec["party"]),
            )
        except KeyError as exc:
            raise DataPlaneError(f"invitation without {exc}") from None


def auth_payload(inv: Invitation, party: str) -> bytes:
    """The bytes a node signs: domain tag, the invitation's fields and the node's own party name."""
    body = {
        "protocol": PROTOCOL,
        "address": inv.address,
        "run_id": int(inv.run_id),
        "session": inv.session,
        "token": inv.token,
        "party": party,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def node_hello(inv: Invitation, party: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The node's first frame: who it is, the invitation it answers and its signature over both."""
    return {
        "protocol": PROTOCOL,
        "party": party,
        "run_id": int(inv.run_id),
        "session": inv.session,
        "token": inv.token,
        "signature": base64.b64encode(key.sign(auth_payload(inv, party))).decode(),
    }


# -- coordinator side ------------------------------------------------------------------------------
@dataclass
class _Link:
    """One node's live stream: frames down through ``out``, replies matched to waiting futures."""

    party: str
    node_id: int
    out: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    pending: dict[str, Future[lc.Frame]] = field(default_factory=dict)
    broken: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message_id: str, raw: bytes) -> Future[lc.Frame]:
        fut: Future[lc.Frame] = Future()
        with self.lock:
            if self.broken is not None:
                fut.set_exception(DataPlaneError(self.broken))
                return fut
            self.pending[message_id] = fut
        self.out.put(raw)
        return fut

    def deliver(self, raw: bytes) -> None:
        try:
            frame = decode_frame(raw)
        except lc.ChannelError as exc:
            self.fail(f"sent a malformed frame: {exc}")
            return
        with self.lock:
            fut = self.pending.pop(str(frame.header.get("reply_to", "")), None)
        if fut is None:
            log.warning("data plane: %s answered a message it was not sent; dropped", self.party)
        elif not frame.header.get("ok"):
            fut.set_exception(DataPlaneError(f"the node refused the message: {frame.header.get('error')}"))
        else:
            fut.set_result(frame)

    def fail(self, reason: str) -> None:
        with self.lock:
            if self.broken is None:
                self.broken = reason
            waiting, self.pending = list(self.pending.values()), {}
        for fut in waiting:
            if not fut.done():
                fut.set_exception(DataPlaneError(reason))
        self.out.put(None)

    @property
    def alive(self) -> bool:
        return self.broken is None


class DataPlaneServer:
    """The coordinator's end: TLS gRPC server, invitations, node authentication, live links.

    ``node_keys``: each party's *provisioned* Ed25519 node public key (the operator's key
    material, not anything a node declares); a node that signs with another key, presents a
    token it was not given (or one already spent, or of another run/session) is refused, and the
    refusal is logged and kept in :attr:`refusals`.
    """

    def __init__(
        self,
        node_keys: Mapping[str, Ed25519PublicKey],
        cert_pem: bytes,
        key_pem: bytes,
        run_id: int,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        self.node_keys = dict(node_keys)
        self.run_id = int(run_id)
        self.session = secrets.token_hex(16)
        self.links: dict[str, _Link] = {}
        self.refusals: list[str] = []
        self._tokens: dict[str, str] = {}  # token -> party (spent on first use)
        self._lock = threading.Lock()
        self._server, self.address = serve_stream(
            METHOD, self._connect, host, workers=16, cert_pem=cert_pem, key_pem=key_pem, error=DataPlaneError
        )
        log.info("data plane listening on %s (session %s)", self.address, self.session)

    def invite(self, party: str) -> Invitation:
        token = secrets.token_hex(32)
        with self._lock:
            self._tokens[token] = party
        return Invitation(self.address, self.run_id, self.session, token, party)

    def link(self, party: str) -> _Link | None:
        link = self.links.get(party)
        return link if link is not None and link.alive else None

    def stop(self, grace: float = 2.0) -> None:
        for link in list(self.links.values()):
            link.fail("the coordinator closed the data plane")
        self._server.stop(grace).wait(grace + 1)

    # -- one node's stream ---------------------------------------------------------------------
    def _refuse(self, who: str, reason: str) -> bytes:
        msg = f"refused a data-plane connection claiming to be {who!r}: {reason}"
        log.warning("data plane: %s", msg)
        self.refusals.append(msg)
        return _json_frame({"ok": False, "error": reason})

    def _authenticate(self, raw: bytes) -> tuple[str | None, str]:
        """The authenticated party, or None and why not."""
        try:
            hello = decode_frame(raw).header
        except lc.ChannelError as exc:
            return None, f"malformed hello: {exc}"
        party = str(hello.get("party", "?"))
        if hello.get("protocol") != PROTOCOL:
            return None, f"unknown protocol {hello.get('protocol')!r}"
        if hello.get("run_id") != self.run_id or hello.get("session") != self.session:
            return None, f"its invitation is for run {hello.get('run_id')} session {hello.get('session')}, not this run"
        token = str(hello.get("token", ""))
        with self._lock:
            invited = self._tokens.get(token)
            if invited is None:
                return None, "unknown or already used token"
            if invited != party:
                return None, f"the token was issued to {invited!r}"
            key = self.node_keys.get(party)
            if key is None:
                return None, "no provisioned node key for this party"
            inv = Invitation(self.address, self.run_id, self.session, token, party)
            try:
                key.verify(base64.b64decode(str(hello.get("signature", ""))), auth_payload(inv, party))
            except (InvalidSignature, ValueError):
                return None, "signature does not verify under the party's provisioned node key"
            del self._tokens[token]  # one use only
        return party, ""

    def _connect(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            first = next(requests)
        except (StopIteration, grpc.RpcError):
            return
        party, why = self._authenticate(first)
        if party is None:
            try:
                who = str(decode_frame(first).header.get("party", "?"))
            except lc.ChannelError:
                who = "?"
            yield self._refuse(who, why)
            return
        link = _Link(party, 0)
        old = self.links.get(party)
        if old is not None:
            old.fail(f"party {party!r} opened a new data-plane stream")
        self.links[party] = link
        context.add_callback(lambda: link.fail(f"the data-plane stream of party {party!r} closed"))

        def read() -> None:
            try:
                for raw in requests:
                    link.deliver(raw)
                link.fail(f"party {party!r} closed its data-plane stream")
            except grpc.RpcError as exc:
                link.fail(f"the data-plane stream of party {party!r} broke: {_rpc_code(exc)}")
            except Exception as exc:  # noqa: BLE001 - a reader thread must not die silently
                link.fail(f"the data-plane stream of party {party!r} broke: {type(exc).__name__}: {exc}")

        log.info("data plane: %s connected", party)
        yield _json_frame({"ok": True, "party": party})
        threading.Thread(target=read, name=f"dataplane-{party}", daemon=True).start()
        while True:
            item = link.out.get()
            if item is None:
                return
            yield item


@dataclass
class PhaseTally:
    """Round trips of one protocol phase by transport, and their wall time."""

    flower: int = 0
    dataplane: int = 0
    flower_seconds: float = 0.0
    dataplane_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"flower_round_trips": self.flower, "dataplane_round_trips": self.dataplane}
        if self.flower:
            out["flower_seconds_per_round_trip"] = round(self.flower_seconds / self.flower, 4)
        if self.dataplane:
            out["dataplane_seconds_per_round_trip"] = round(self.dataplane_seconds / self.dataplane, 4)
        return out


def phase_of(group_id: str) -> str:
    """The phase of a relay step name (``hetero_lr/3``, ``r1:hetero_lr/3`` -> ``hetero_lr``)."""
    return str(group_id).split("/", 1)[0].split(":", 1)[-1] or "?"


class DataPlaneGrid(DelegatingGrid):
    """``inner`` (Flower) with each invited node's protocol steps sent over its data-plane stream.

    ``parties``: Flower node id -> party, for the nodes to invite (the registered node ids of the
    deployment). The invitations ride along the first Flower call (the nodes' introduction), so
    they cost no round trip of their own. Flower stays the control plane: messages of
    ``control_types`` -- introduction, each phase's start and finish, the final tree head -- go
    through Flower, so a node whose SuperNode is gone (its Flower authentication lapsed) stops the
    run at the next phase as before; the relay steps inside a phase, whose number grows with
    batches and epochs, go down the streams. A node that declined, could not connect, or whose
    stream broke is served by ``inner`` throughout. Counts every round trip per phase and
    transport (:meth:`stats`).
    """

    def __init__(
        self,
        inner: Grid,
        server: DataPlaneServer,
        parties: Mapping[int, str],
        *,
        run_config: Mapping[str, Any] | None = None,
        control_types: Iterable[str] = CONTROL_TYPES,
    ) -> None:
        self.inner = inner
        self.server = server
        self.parties = dict(parties)
        self.run_config = dict(run_config or {})
        self.control_types = frozenset(control_types)
        self.invited: set[int] = set()
        self.declined: dict[str, str] = {}
        self.tally: dict[str, PhaseTally] = {}

    # -- invitations ---------------------------------------------------------------------------
    def _invitations(self, node_ids: Iterable[int]) -> list[Message]:
        todo = sorted(n for n in node_ids if n in self.parties and n not in self.invited)
        self.invited.update(todo)
        return [
            Message(
                self.server.invite(self.parties[n]).to_record(), dst_node_id=n, message_type=INVITE, group_id=RECORD
            )
            for n in todo
        ]

    def _answered(self, invites: list[Message], replies: list[Message]) -> None:
        """Which invited nodes now have an authenticated stream; the others stay on Flower."""
        answered = set()
        for rep in replies:
            party = self.parties.get(rep.metadata.src_node_id, "?")
            answered.add(party)
            if rep.has_error():
                self.declined[party] = rep.error.reason or f"error {rep.error.code}"
            else:
                rec = rep.content.config_records.get(RECORD) or ConfigRecord({})
                if not rec.get("ok"):
                    self.declined[party] = str(rec.get("error", "declined"))
            if party not in self.declined and self.server.link(party) is None:
                self.declined[party] = "accepted but no authenticated stream"
        for m in invites:
            party = self.parties[m.metadata.dst_node_id]
            if party not in answered:
                self.declined[party] = "no answer to the invitation"
        for party in {self.parties[m.metadata.dst_node_id] for m in invites} & set(self.declined):
            log.warning("data plane: %s stays on Flower: %s", party, self.declined[party])

    # -- the Grid call the relay makes ---------------------------------------------------------
    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        msgs = list(messages)
        invites = self._invitations({m.metadata.dst_node_id for m in msgs})
        t = time.perf_counter()
        streamed: list[tuple[Message, str, Future[lc.Frame]]] = []
        flower: list[Message] = []
        for m in msgs:
            party = self.parties.get(m.metadata.dst_node_id)
            link = self.server.link(party) if party is not None else None
            if link is None or party is None or m.metadata.message_type in self.control_types:
                flower.append(m)
                continue
            m.metadata.__dict__["_message_id"] = m.object_id  # as Flower's grid does before pushing
            header = {"protocol": PROTOCOL, "op": "message", "run_config": self.run_config, "task_id": 0}
            raw = encode_frame(lc.message_to_frame(header, m))
            streamed.append((m, party, link.send(m.metadata.message_id, raw)))
        replies: list[Message] = []
        if flower or invites:
            got = list(self.inner.send_and_receive(invites + flower, timeout=timeout))
            self._answered(invites, [r for r in got if r.metadata.message_type == INVITE])
            replies = [r for r in got if r.metadata.message_type != INVITE]
        end = None if timeout is None else time.monotonic() + timeout
        for m, party, fut in streamed:
            try:
                left = None if end is None else max(0.0, end - time.monotonic())
                reply = lc.frame_to_message(fut.result(timeout=left))
            except FutureTimeout:
                continue  # no reply: the relay names the party that did not answer in time
            except (DataPlaneError, lc.ChannelError) as exc:
                reason = f"party {party!r} over the data plane: {exc}"
                replies.append(Message(Error(code=ERROR_CODE, reason=reason), reply_to=m))
                continue
            if reply.metadata.reply_to_message_id != m.metadata.message_id:
                reason = f"party {party!r} over the data plane answered another message"
                replies.append(Message(Error(code=ERROR_CODE, reason=reason), reply_to=m))
                continue
            replies.append(reply)
        seconds = time.perf_counter() - t
        for ph in {phase_of(m.metadata.group_id) for m in msgs}:
            tally = self.tally.setdefault(ph, PhaseTally())
            if flower or invites:
                tally.flower += 1
                tally.flower_seconds += seconds
            elif streamed:
                tally.dataplane += 1
                tally.dataplane_seconds += seconds
        return replies

    def stats(self) -> dict[str, Any]:
        """Round trips per phase and transport, for metrics.json."""
        total = PhaseTally()
        for t in self.tally.values():
            total.flower += t.flower
            total.dataplane += t.dataplane
            total.flower_seconds += t.flower_seconds
            total.dataplane_seconds += t.dataplane_seconds
        return {
            **total.as_dict(),
            "by_phase": {k: v.as_dict() for k, v in self.tally.items()},
            "streams": sorted(p for p in self.server.links if self.server.link(p) is not None),
            "declined": dict(self.declined),
            "refusals": list(self.server.refusals),
        }


# -- node side -------------------------------------------------------------------------------------
Answer = Callable[[lc.Frame], lc.Frame]


class DataPlaneClient:
    """A node's outgoing stream: dial, authenticate, then answer every frame that comes down."""

    def __init__(self, inv: Invitation, ca_pem: bytes, key: Ed25519PrivateKey, party: str, answer: Answer) -> None:
        self.inv, self.ca_pem, self.key, self.party, self.answer = inv, ca_pem, key, party, answer
        self.closed = threading.Event()
        self.answered = 0
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._channel: grpc.Channel | None = None
        self._call: Any = None

    def connect(self, timeout: float = 20.0) -> None:
        """Dial, send the signed hello, wait for the verdict; :class:`DataPlaneError` if refused."""
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
        self._channel = grpc.secure_channel(self.inv.address, creds, options=GRPC_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self.close()
            raise DataPlaneError(
                f"cannot reach the data plane at {self.inv.address} within {timeout:.0f} s "
                "(down, or its certificate is not signed by this node's federation CA)"
            ) from None
        self._out.put(_json_frame(node_hello(self.inv, self.party, self.key)))
        self._call = self._channel.stream_stream(METHOD)(iter(self._out.get, None))
        try:
            verdict = decode_frame(next(self._call)).header
        except (StopIteration, grpc.RpcError, lc.ChannelError) as exc:
            self.close()
            raise DataPlaneError(f"the data plane at {self.inv.address} closed the stream: {exc}") from None
        if not verdict.get("ok"):
            self.close()
            raise DataPlaneError(f"the data plane at {self.inv.address} refused this node: {verdict.get('error')}")
        threading.Thread(target=self._serve, name="dataplane-client", daemon=True).start()

    def _serve(self) -> None:
        try:
            for raw in self._call:
                try:
                    reply = self.answer(decode_frame(raw))
                except lc.ChannelError as exc:
                    reply = lc.Frame({"ok": False, "error": str(exc)}, [])
                self._out.put(encode_frame(reply))
                self.answered += 1
        except grpc.RpcError as exc:
            if _rpc_code(exc) != grpc.StatusCode.CANCELLED:
                log.warning("data-plane stream ended: %s", _rpc_code(exc))
        finally:
            self.closed.set()
            self._out.put(None)

    def close(self) -> None:
        self._out.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            self._channel.close()
        self.closed.set()
