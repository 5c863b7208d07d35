"""Streamed relay steps: a whole epoch of protocol exchanges inside one coordinator step.

Why: hetero-LR's batches are sequential (each needs the peer's previous message and the weights
the previous batch updated), so relayed one step at a time an epoch costs ``3 * batches + 4``
coordinator steps: at a million rows 736 of them, each a barrier in which the coordinator waits
for every node, records, and sends again, and each node reloads its party from its stored state.
Here the coordinator's relay runs one *streamed step* instead. It opens a session on its
:class:`ExchangeHub` and sends each addressed node the usual step request, with a one-time
invitation in its params. Each node keeps its party in memory, dials **out** to the hub and
exchanges the step's envelopes there as fast as the parties produce them, until a party reaches a
checkpoint boundary (an epoch end: ``RestartableParty.resume_point``) or finishes. Then every
node answers the coordinator's step as before. So the coordinator's count per epoch is one step,
whatever the number of batches.

What does not change (docs/protocols/coordinator.md): every exchange inside the stream is a
*sub-step* ``<step>.<m>`` with the semantics of a relay step: the hub waits until every node
with mail has posted its answer, records in the ledger what crossed (sender, recipient, kind,
size, SHA-256: :meth:`Recorder.step`), then delivers each recipient its envelopes. Envelopes are
signed by their sender and verified, sequence-checked and logged by the recipient exactly as over
Flower, so ``fedcredit ledger verify --egress`` matches the two logs sub-step by sub-step, and an
envelope the hub alters, drops, replays or injects is refused by its recipient (or named by the
verifier) as on the relay. The hub is the coordinator's and as untrusted as the coordinator.

Who may join: the invitation's token is random, one-time, for one party and one session, and
travels inside the step request (Flower's authenticated channel, or the data plane's); a stream
presenting another token is refused. With a TLS certificate (deployment: the data plane's) the
node checks the hub against its *own* operator's CA (``dataplane-ca``), never one the coordinator
sends; without one the hub listens on loopback only and a node refuses a plaintext hub elsewhere
(simulation: all nodes are processes of this machine).

Wire: gRPC bidi stream ``/fedcredit.Exchange/Join`` of raw bytes, each one frame of
:mod:`parties.common.local_channel` (JSON header, blobs; :func:`parties.common.dataplane.encode_frame`).
Up: ``hello``, then per sub-step ``post`` (``m``, ``pause``, ``finished``; blob: the signed
envelopes as a :class:`~parties.common.transport.RelayBatch`) or ``error``. Down: the verdict,
then ``deliver`` (``m``, ``step``; blob: envelopes), ``stop`` or ``abort``.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]

from parties.common import local_channel as lc
from parties.common.dataplane import GRPC_OPTIONS, decode_frame, encode_frame, serve_stream
from parties.common.transport import RelayBatch
from protocols.common import wire
from protocols.common.party import Envelope
from protocols.common.signing import SignedEnvelope

log = logging.getLogger(__name__)

PROTOCOL = "fedcredit-exchange/1"
METHOD = "/fedcredit.Exchange/Join"
PARAM = "stream"  # the key of a step request's params that carries the invitation
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
POLL = 0.5  # seconds between a waiting stream's liveness checks
JOIN_SECONDS = 120.0  # every invited node joins first thing (before computing), so this is generous

Record = Callable[[str, int, list[dict], list[str]], None]  # (sub-step, round, messages, participants)


class ExchangeError(RuntimeError):
    """A streamed step could not go on; the message names the party and the sub-step."""

    reported = False  # the hub already knows (a node does not join again just to say so)


def substep(step: str, m: int) -> str:
    """The name of exchange ``m`` (1, 2, ...) inside coordinator step ``step``."""
    return f"{step}.{m}"


@dataclass(frozen=True)
class StreamInvite:
    """What a node needs to join a streamed step: where, which session, its one-time token."""

    address: str
    session: str
    token: str
    party: str
    tls: bool

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> StreamInvite:
        try:
            return cls(
                address=str(params["address"]),
                session=str(params["session"]),
                token=str(params["token"]),
                party=str(params["party"]),
                tls=bool(params["tls"]),
            )
        except (KeyError, TypeError) as exc:
            raise ExchangeError(f"malformed stream invitation: missing {exc}") from None


def _batch(envelopes: list[Envelope]) -> bytes:
    return wire.encode(RelayBatch.of(envelopes))


def _unbatch(blob: bytes) -> list[SignedEnvelope]:
    return wire.decode(blob, RelayBatch).envelopes()


def _frame(header: dict[str, Any], *blobs: bytes) -> bytes:
    return encode_frame(lc.Frame(header, list(blobs)))


# -- coordinator side ------------------------------------------------------------------------------
@dataclass
class StreamOutcome:
    """How a streamed step ended: the last exchange's envelopes (the relay delivers them at its next
    step), how many exchanges ran, and the first failure (party, sub-step, reason) if any."""

    leftover: list[SignedEnvelope] = field(default_factory=list)
    exchanges: int = 0
    failure: tuple[str, str, str] | None = None


@dataclass
class _Post:
    envelopes: list[SignedEnvelope]
    pause: bool
    finished: bool


class _Session:
    """One streamed step: who is invited, the current exchange's barrier, each party's downlink."""

    def __init__(
        self,
        step: str,
        round_: int,
        parties: list[str],
        known: set[str],
        record: Record,
        timeout: float,
        route: Callable[[str, str, list[SignedEnvelope]], list[SignedEnvelope]],
    ) -> None:
        self.step, self.round, self.record, self.timeout, self.route = step, round_, record, timeout, route
        self.known = known  # every party of the run: an envelope to anyone else is refused
        self.id = secrets.token_hex(16)
        self.parties = list(parties)
        self.tokens = {secrets.token_hex(32): p for p in parties}
        self.down: dict[str, queue.Queue[bytes]] = {p: queue.Queue() for p in parties}
        self.joined: set[str] = set()
        self.m = 1
        self.expected: set[str] = set(parties)  # who must post exchange m
        self.posts: dict[str, _Post] = {}
        self.outcome = StreamOutcome()
        self.done = False
        self.opened = self.last_progress = time.monotonic()
        self.lock = threading.Lock()

    # every method below runs under self.lock
    def _send_all(self, raw: bytes) -> None:
        for q in self.down.values():
            q.put(raw)

    def _record_posts(self) -> None:
        """What was posted at exchange m goes to the ledger (also when the step then fails)."""
        if not self.posts:
            return
        described = [e.describe() for p in self.posts.values() for e in p.envelopes]
        self.record(substep(self.step, self.m), self.round, described, sorted(self.posts))
        self.outcome.exchanges += 1

    def abort(self, party: str, reason: str) -> None:
        if self.done:
            return
        self._record_posts()
        self.done = True
        where = substep(self.step, self.m)
        self.outcome.failure = (party, where, reason)
        self._send_all(_frame({"op": "abort", "reason": f"party {party!r} at {where!r}: {reason}"}))

    def post(self, party: str, post: _Post) -> None:
        if self.done:
            # a post overtaken by an abort: the node has logged it as sent, so the ledger says so too
            if post.envelopes and self.outcome.failure is not None:
                self.record(substep(self.step, self.m), self.round, [e.describe() for e in post.envelopes], [party])
            return
        if party not in self.expected or party in self.posts:
            self.abort(party, f"posted to exchange {self.m} without mail to answer (or twice)")
            return
        for env in post.envelopes:
            if env.sender != party:
                self.abort(party, f"posted an envelope claiming to be from {env.sender!r}")
                return
            if env.recipient not in self.known:
                self.abort(party, f"addressed unknown party {env.recipient!r}")
                return
        self.posts[party] = post
        self.last_progress = time.monotonic()
        if set(self.posts) == self.expected:
            self._advance()

    def _advance(self) -> None:
        """Exchange m is complete: record it, then deliver it, or stop the stream."""
        self._record_posts()
        envelopes = [e for p in self.posts.values() for e in p.envelopes]
        pause = any(p.pause or p.finished for p in self.posts.values())
        # mail for a party outside this stream (it had none at the step's start) waits for the relay
        if pause or not envelopes or any(e.recipient not in self.down for e in envelopes):
            self.done = True
            self.outcome.leftover = envelopes
            self._send_all(_frame({"op": "stop", "m": self.m}))
            return
        self.m += 1
        self.posts = {}
        inbox: dict[str, list[SignedEnvelope]] = {}
        for env in envelopes:
            inbox.setdefault(env.recipient, []).append(env)
        self.expected = set(inbox)
        for party, mail in inbox.items():
            sub = substep(self.step, self.m)
            header = {"op": "deliver", "m": self.m, "step": sub}
            self.down[party].put(_frame(header, _batch(list(self.route(sub, party, mail)))))

    def check_deadline(self) -> None:
        absent = sorted(set(self.parties) - self.joined)
        if not self.done and absent and time.monotonic() - self.opened > min(self.timeout, JOIN_SECONDS):
            self.abort(absent[0], f"did not join the streamed step within {min(self.timeout, JOIN_SECONDS):.0f} s")
        if not self.done and time.monotonic() - self.last_progress > self.timeout:
            missing = sorted(self.expected - set(self.posts))
            who = missing[0] if missing else self.parties[0]
            never = " (never joined the stream)" if who not in self.joined else ""
            self.abort(who, f"no answer to exchange {self.m} within {self.timeout:.0f} s{never}")


class ExchangeHub:
    """The coordinator's end of streamed steps: one gRPC server, one session at a time.

    ``cert_pem``/``key_pem``: a TLS certificate the federation CA signed (deployment); without
    them the hub serves plaintext and only on a loopback ``host``.
    """

    def __init__(self, *, host: str = "127.0.0.1", cert_pem: bytes | None = None, key_pem: bytes | None = None):
        self.tls = cert_pem is not None and key_pem is not None
        if not self.tls and host not in LOOPBACK:
            raise ExchangeError(f"a plaintext exchange hub listens on loopback only, not on {host!r}")
        self.session: _Session | None = None
        self.refusals: list[str] = []
        self.exchanges = 0  # over all streamed steps (metrics)
        self.host, self._creds = host, (cert_pem, key_pem)
        self._server: grpc.Server | None = None
        self.address = ""

    def _start(self) -> None:
        """Listen, on the first streamed step: not while a simulation engine is still starting its
        processes from this one (Ray forks them, and gRPC threads must not be running then)."""
        cert_pem, key_pem = self._creds
        self._server, self.address = serve_stream(
            METHOD, self._join, self.host, workers=32, cert_pem=cert_pem, key_pem=key_pem, error=ExchangeError
        )
        log.info("exchange hub listening on %s (%s)", self.address, "TLS" if self.tls else "loopback, plaintext")

    # -- the relay's side ----------------------------------------------------------------------
    def open(
        self, step: str, round_: int, parties: list[str], known: set[str], record: Record, timeout: float
    ) -> dict[str, dict]:
        """Start the session of streamed step ``step`` for ``parties`` (``known``: all the run's
        parties); returns each party's invitation params."""
        if self.session is not None and not self.session.done:
            raise ExchangeError(f"streamed step {self.session.step!r} is still open")
        if self._server is None:
            self._start()
        s = _Session(step, round_, parties, set(known), record, timeout, self.deliver)
        self.session = s
        by_party = {p: t for t, p in s.tokens.items()}
        return {p: StreamInvite(self.address, s.id, by_party[p], p, self.tls).to_params() for p in parties}

    def deliver(self, step: str, recipient: str, envelopes: list[SignedEnvelope]) -> list[SignedEnvelope]:
        """What the hub hands ``recipient`` at exchange ``step``: the envelopes addressed to it,
        unchanged. A dishonest coordinator's hub could hand anything (the attack simulations
        override this); recipients verify every envelope, so that is caught, not believed."""
        return envelopes

    def idle_seconds(self) -> float:
        """Seconds since the open session last made progress (0 when none is open or it ended)."""
        s = self.session
        if s is None or s.done:
            return 0.0
        with s.lock:
            s.check_deadline()
            return time.monotonic() - s.last_progress

    def abort(self, party: str, reason: str) -> None:
        s = self.session
        if s is not None:
            with s.lock:
                s.abort(party, reason)

    def close(self) -> StreamOutcome:
        """End the session (aborting it if it is still running) and return how it went."""
        s = self.session
        if s is None:
            return StreamOutcome()
        with s.lock:
            if not s.done:
                s.abort("coordinator", "the coordinator's step ended while the stream was still running")
            self.exchanges += s.outcome.exchanges
            return s.outcome

    def stop(self, grace: float = 2.0) -> None:
        self.abort("coordinator", "the coordinator stopped the exchange hub")
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1)

    # -- one node's stream ---------------------------------------------------------------------
    def _refuse(self, who: str, reason: str) -> bytes:
        msg = f"refused a stream claiming to be {who!r}: {reason}"
        log.warning("exchange: %s", msg)
        self.refusals.append(msg)
        return _frame({"ok": False, "error": reason})

    def _admit(self, raw: bytes) -> tuple[_Session | None, str, str]:
        try:
            hello = decode_frame(raw).header
        except lc.ChannelError as exc:
            return None, "?", f"malformed hello: {exc}"
        party, s = str(hello.get("party", "?")), self.session
        if hello.get("protocol") != PROTOCOL:
            return None, party, f"unknown protocol {hello.get('protocol')!r}"
        if s is None or s.done or hello.get("session") != s.id:
            return None, party, "no such open streamed step (ended, or another session)"
        with s.lock:
            invited = s.tokens.pop(str(hello.get("token", "")), None)
            if invited is None:
                return None, party, "unknown or already used token"
            if invited != party:
                s.tokens[str(hello.get("token"))] = invited  # not spent by an impostor
                return None, party, f"the token was issued to {invited!r}"
            s.joined.add(party)
            s.last_progress = time.monotonic()
        return s, party, ""

    def _join(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            first = next(requests)
        except (StopIteration, grpc.RpcError):
            return
        s, party, why = self._admit(first)
        if s is None:
            yield self._refuse(party, why)
            return
        yield _frame({"ok": True, "party": party, "step": s.step})

        def gone() -> None:  # the RPC ended: a node process that died must not leave its peers waiting
            with s.lock:
                s.abort(party, "its stream closed before the streamed step ended (node process lost?)")

        context.add_callback(gone)
        down = s.down[party]
        while True:
            try:
                raw = down.get_nowait()
            except queue.Empty:
                raw = None
            if raw is None:
                if s.done and down.empty():
                    return
                # this party owes the hub its answer to exchange m, or waits for mail
                if party in s.expected and party not in s.posts and not s.done:
                    self._read_post(s, party, requests)
                    continue
                try:
                    raw = down.get(timeout=POLL)
                except queue.Empty:
                    with s.lock:
                        s.check_deadline()
                    continue
            yield raw
            if decode_frame(raw).header.get("op") in ("stop", "abort"):
                return

    def _read_post(self, s: _Session, party: str, requests: Iterator[bytes]) -> None:
        """Read this party's next frame (blocking) and hand it to the session."""
        try:
            frame = decode_frame(next(requests))
        except StopIteration:
            with s.lock:
                s.abort(party, "closed its stream mid-step")
            return
        except (grpc.RpcError, lc.ChannelError) as exc:
            with s.lock:
                s.abort(party, f"its stream broke: {type(exc).__name__}: {exc}")
            return
        h = frame.header
        with s.lock:
            if h.get("op") == "error":
                s.abort(party, str(h.get("reason", "failed"))[:2000])
            elif h.get("op") != "post" or h.get("m") != s.m or len(frame.blobs) != 1:
                s.abort(party, f"sent {h.get('op')!r} for exchange {h.get('m')!r}, expected its post for {s.m}")
            else:
                try:
                    envelopes = _unbatch(frame.blobs[0])
                except wire.WireError as exc:
                    s.abort(party, f"posted malformed envelopes: {exc}")
                    return
                s.post(party, _Post(envelopes, bool(h.get("pause")), bool(h.get("finished"))))


# -- node side -------------------------------------------------------------------------------------
@dataclass
class Delivery:
    """What the hub answered a post: the next exchange's inbox, or the end of the stream."""

    stop: bool
    m: int = 0
    step: str = ""
    inbox: list[SignedEnvelope] = field(default_factory=list)


class ExchangeClient:
    """A node's stream to the hub for one streamed step."""

    def __init__(self, invite: StreamInvite, party: str, *, ca_pem: bytes | None = None, timeout: float = 20.0):
        if invite.party != party:
            raise ExchangeError(f"node {party}: the stream invitation is addressed to {invite.party!r}")
        if invite.tls and ca_pem is None:
            raise ExchangeError(f"node {party}: the hub uses TLS but this node has no CA configured (dataplane-ca)")
        if not invite.tls and invite.address.rsplit(":", 1)[0] not in LOOPBACK:
            raise ExchangeError(f"node {party}: refuses a plaintext exchange hub off this machine ({invite.address})")
        self.invite, self.party = invite, party
        self._up: queue.Queue[bytes | None] = queue.Queue()
        if invite.tls:
            creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
            self._channel = grpc.secure_channel(invite.address, creds, options=GRPC_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(invite.address, options=GRPC_OPTIONS)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self.close()
            raise ExchangeError(f"node {party}: cannot reach the exchange hub at {invite.address}") from None
        hello = {"protocol": PROTOCOL, "session": invite.session, "token": invite.token, "party": party}
        self._up.put(_frame(hello))
        self._down = self._channel.stream_stream(METHOD)(iter(self._up.get, None))
        verdict = self._next("joining")
        if not verdict.header.get("ok"):
            self.close()
            raise ExchangeError(f"node {party}: the exchange hub refused this node: {verdict.header.get('error')}")

    def _next(self, what: str) -> lc.Frame:
        try:
            return decode_frame(next(self._down))
        except (StopIteration, grpc.RpcError, lc.ChannelError) as exc:
            self.close()
            raise ExchangeError(f"node {self.party}: the exchange stream ended while {what}: {exc}") from None

    def post(self, m: int, envelopes: list[Envelope], *, pause: bool, finished: bool) -> Delivery:
        """Send this party's answer to exchange ``m``; wait for its next inbox or the stream's end."""
        self._up.put(_frame({"op": "post", "m": m, "pause": pause, "finished": finished}, _batch(envelopes)))
        frame = self._next(f"waiting after exchange {m}")
        op = frame.header.get("op")
        if op == "stop":
            return Delivery(stop=True, m=m)
        if op == "abort":
            raise ExchangeError(f"node {self.party}: the streamed step was aborted: {frame.header.get('reason')}")
        if op != "deliver" or len(frame.blobs) != 1:
            raise ExchangeError(f"node {self.party}: unexpected {op!r} from the exchange hub")
        try:
            inbox = _unbatch(frame.blobs[0])
        except wire.WireError as exc:
            raise ExchangeError(f"node {self.party}: malformed delivery from the exchange hub: {exc}") from None
        return Delivery(stop=False, m=int(frame.header["m"]), step=str(frame.header["step"]), inbox=inbox)

    def fail(self, reason: str) -> None:
        """Tell the hub this party failed, so the other parties stop at once; waits for the hub's
        abort (the acknowledgement) so closing the stream cannot overtake the report."""
        self._up.put(_frame({"op": "error", "reason": reason[:2000]}))
        try:
            self._next("reporting its failure")
        except ExchangeError:
            pass  # the stream is gone; the hub aborts the step when it notices

    def close(self) -> None:
        self._up.put(None)
        self._channel.close()

    @classmethod
    def report_failure(cls, params: dict, party: str, reason: str, *, ca_pem: bytes | None = None) -> None:
        """A node that fails a streamed step before joining it (e.g. it refused the step's inbox)
        joins only to say so, so its peers stop at once instead of at the join deadline. Best
        effort: if the hub cannot be reached, the deadline stops them."""
        try:
            client = cls(StreamInvite.from_params(params), party, ca_pem=ca_pem, timeout=5.0)
        except ExchangeError:
            return
        try:
            client.fail(reason)
        finally:
            client.close()


Seal = Callable[[str, list[Envelope]], list[Envelope]]  # (sub-step, outbox) -> signed and logged
Accept = Callable[[str, list[SignedEnvelope]], list[Envelope]]  # (sub-step, inbox) -> verified and logged


def stream_party(
    client: ExchangeClient,
    step: str,
    party: Any,
    inbox: list[Envelope],
    *,
    seal: Seal,
    accept: Accept,
    pause: Callable[[], bool],
) -> int:
    """Drive ``party`` through the streamed step; returns the number of exchanges it posted.

    ``inbox``: the coordinator step's (verified) inbox; the party's answer to it is exchange 1.
    ``seal`` signs and logs an outbox under its sub-step, ``accept`` verifies and logs an inbox;
    ``pause``: the party is at a checkpoint boundary, so the stream should stop after this
    exchange. An exception in the party is reported to the hub (which aborts the other nodes at
    once, naming this one) and re-raised.
    """
    m, posted = 1, 0
    try:
        outbox = party.receive(inbox)
        while True:
            sealed = seal(substep(step, m), outbox)
            posted += 1
            got = client.post(m, sealed, pause=pause(), finished=bool(party.finished))
            if got.stop:
                return posted
            m = got.m
            outbox = party.receive(accept(got.step, got.inbox))
    except ExchangeError as exc:
        exc.reported = True  # the hub ended the stream: it knows
        raise
    except Exception as exc:
        client.fail(f"{type(exc).__name__}: {exc}")
        exc.reported = True  # type: ignore[attr-defined]
        raise
    finally:
        client.close()
