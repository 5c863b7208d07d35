"""A party's long-lived node service: the only process that opens the party's data and keys.

Why: in deployment Flower starts a fresh ``flwr-clientapp`` process per message, which (1) pays
Python start-up, imports, data loading and Paillier table building on every protocol step, and
(2) runs whatever code the app bundle served by the coordinator's SuperLink carries. The party's
operator therefore starts this service (``fedcredit node serve``) under an account of their own;
it owns the node configuration (data paths, egress-log key, node directory), keeps the Flower
``Context`` of each run and the warm caches (data frames, Paillier fixed-base tables) in memory,
and persists each run's ``Context.state`` to disk after every message, so a restarted service
continues where it stopped. The ClientApp becomes a forwarder
(:mod:`parties.common.forwarder`) that never sees a data path.

The service runs the *same* handler entry point as simulation (the ClientApp built by
``parties.client_app.build_client_app``; passed in, so this module knows no app). One message is
handled at a time, as a SuperNode does -- whether it came through the forwarder or down the
data-plane stream (:mod:`parties.common.dataplane`): a coordinator's invitation (``dataplane_ca``
set, i.e. the operator trusts a federation CA for it) makes the service dial out to the
coordinator's data plane and answer the messages sent there with the same handler and Context.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from parties.common import dataplane as dp
from parties.common import local_channel as lc
from parties.common.state_file import decode_state, encode_state

log = logging.getLogger(__name__)
ClientHandler = Callable[[Message, Context], Message]
PROTOCOL = "fedcredit-node/1"


# -- persisted contexts --------------------------------------------------------------------------
@dataclass
class ContextStore:
    """Each run's Flower ``Context.state``, on disk after every message (atomic replace + fsync)."""

    directory: Path
    _live: dict[int, Context] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)

    def path(self, run_id: int) -> Path:
        return self.directory / f"run-{int(run_id)}.state"

    def get(self, run_id: int, node_id: int, node_config: Mapping[str, Any], run_config: Mapping[str, Any]) -> Context:
        ctx = self._live.get(run_id)
        if ctx is None:
            ctx = Context(
                run_id=run_id,
                node_id=node_id,
                node_config=dict(node_config),
                state=self._load(run_id),
                run_config=dict(run_config),
            )
            self._live[run_id] = ctx
        ctx.run_config = dict(run_config)  # the coordinator's run config of this message
        return ctx

    def _load(self, run_id: int) -> RecordDict:
        p = self.path(run_id)
        if not p.exists():
            return RecordDict()
        return decode_state(lc.read_frame_file(p), str(p))

    def save(self, run_id: int) -> None:
        lc.write_frame_file(self.path(run_id), encode_state(self._live[run_id].state, run_id))

    def forget(self, run_id: int) -> None:
        """Drop the in-memory Context (after a failed message: the next one reloads the saved state)."""
        self._live.pop(run_id, None)


# -- the service ---------------------------------------------------------------------------------
@dataclass
class NodeService:
    """Answer forwarded Flower messages with ``handler`` on this party's own Context."""

    handler: ClientHandler
    node_config: dict[str, Any]  # the operator's: party, role, data, node-dir, egress-key, scenario
    socket_path: Path
    state_dir: Path
    group: str | None = None  # an OS group whose members (the SuperNode's account) may connect
    allowed_uids: set[int] = field(default_factory=set)  # besides this service's own uid
    dataplane_ca: Path | None = None  # the operator's federation CA: accept data-plane invitations
    handled: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)  # one message at a time
    _dataplane: dp.DataPlaneClient | None = None

    def __post_init__(self) -> None:
        self.store = ContextStore(self.state_dir)
        self.allowed_uids = set(self.allowed_uids) | {os.getuid()}

    # -- one message ----------------------------------------------------------------------------
    def handle(self, message: Message, header: Mapping[str, Any]) -> Message:
        """Run the handler on this run's persisted Context; persist it; return the reply."""
        if message.metadata.message_type == dp.INVITE:
            return self.join_dataplane(message)
        with self._lock:
            return self._handle(message, header)

    def _handle(self, message: Message, header: Mapping[str, Any]) -> Message:
        run_id = int(message.metadata.run_id)
        node_id = int(message.metadata.dst_node_id)
        TaskIdentity.run_id, TaskIdentity.node_id = run_id, node_id
        TaskIdentity.task_id = int(header.get("task_id") or 0)
        node_config = dict(self.node_config)
        if self.dataplane_ca is not None:  # the same trust anchor for the exchange hub (streamed steps)
            node_config["dataplane-ca"] = str(self.dataplane_ca)
        ctx = self.store.get(run_id, node_id, node_config, header.get("run_config") or {})
        try:
            reply = self.handler(message, ctx)
        except Exception as exc:  # noqa: BLE001 - as Flower's runtime: an error reply, state untouched
            log.exception("handler raised on %s", message.metadata.message_type)
            self.store.forget(run_id)
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc)}:<'{exc}'>"), reply_to=message
            )
        self.store.save(run_id)  # before the reply leaves: a crash after it cannot lose the step
        self.handled += 1
        return reply

    # -- the data plane -------------------------------------------------------------------------
    def join_dataplane(self, message: Message) -> Message:
        """Dial out to the coordinator's data plane the invitation names; answer whether it worked.

        The server must present a certificate of the CA in *this operator's* configuration
        (``dataplane-ca``); without one configured, invitations are declined and everything stays
        on Flower. The node proves itself with its egress (node) key over the invitation."""

        def answer(ok: bool, error: str = "") -> Message:
            return Message(RecordDict({dp.RECORD: ConfigRecord({"ok": ok, "error": error})}), reply_to=message)

        if self.dataplane_ca is None:
            return answer(False, "this node service has no data-plane CA configured (dataplane-ca)")
        try:
            from fedcredit.ledger import load_private_key

            inv = dp.Invitation.from_message(message)
            key = load_private_key(str(self.node_config["egress-key"]))
            client = dp.DataPlaneClient(
                inv, self.dataplane_ca.read_bytes(), key, str(self.node_config.get("party")), self._answer_frame
            )
            client.connect()
        except Exception as exc:  # noqa: BLE001 - declined: the coordinator keeps this node on Flower
            log.warning("data-plane invitation declined: %s", exc)
            return answer(False, f"{type(exc).__name__}: {exc}")
        if self._dataplane is not None:
            self._dataplane.close()
        self._dataplane = client
        log.info("data plane: connected to %s (run %s)", inv.address, inv.run_id)
        return answer(True)

    def _answer_frame(self, frame: lc.Frame) -> lc.Frame:
        """One request frame from the data-plane stream, answered exactly as a forwarded message."""
        t = time.perf_counter()
        message = lc.frame_to_message(frame)
        mid = message.metadata.message_id
        if message.metadata.message_type == dp.INVITE:
            return lc.Frame({"ok": False, "reply_to": mid, "error": "no invitations over the data plane"}, [])
        log.info("received %s over the data plane (group %s)", message.metadata.message_type, message.metadata.group_id)
        reply = self.handle(message, frame.header)
        seconds = time.perf_counter() - t
        log.info("answered %s in %.3f s", message.metadata.message_type, seconds)
        return lc.message_to_frame({"ok": True, "reply_to": mid, "service_seconds": round(seconds, 4)}, reply)

    def _serve_one(self, conn: socket.socket) -> None:
        uid = lc.peer_uid(conn)
        if uid not in self.allowed_uids:
            log.warning("refused a connection from uid %d (allowed: %s)", uid, sorted(self.allowed_uids))
            lc.send_frame(conn, lc.Frame({"ok": False, "error": f"uid {uid} may not use this node service"}, []))
            return
        req = lc.recv_frame(conn)
        op = req.header.get("op")
        if req.header.get("protocol") != PROTOCOL:
            lc.send_frame(
                conn, lc.Frame({"ok": False, "error": f"unknown protocol {req.header.get('protocol')!r}"}, [])
            )
            return
        if op == "ping":
            lc.send_frame(conn, lc.Frame({"ok": True, "party": self.node_config.get("party"), "pid": os.getpid()}, []))
            return
        if op != "message":
            lc.send_frame(conn, lc.Frame({"ok": False, "error": f"unknown operation {op!r}"}, []))
            return
        t = time.perf_counter()
        message = lc.frame_to_message(req)
        log.info("received %s (group %s)", message.metadata.message_type, message.metadata.group_id)
        reply = self.handle(message, req.header)
        seconds = time.perf_counter() - t
        lc.send_frame(conn, lc.message_to_frame({"ok": True, "service_seconds": round(seconds, 4)}, reply))
        log.info("answered %s in %.3f s", message.metadata.message_type, seconds)

    # -- lifecycle ------------------------------------------------------------------------------
    def bind(self) -> None:
        self._sock = lc.bind_private_socket(self.socket_path, group=self.group)
        self._sock.settimeout(0.2)

    def serve_forever(self) -> None:
        """Accept and answer until :meth:`stop`; one message at a time."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        log.info("node service for %r listening on %s", self.node_config.get("party"), self.socket_path)
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                with conn:
                    conn.settimeout(None)
                    try:
                        self._serve_one(conn)
                    except (lc.ChannelError, OSError) as exc:
                        log.warning("dropped a request: %s", exc)
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()
        if self._dataplane is not None:
            self._dataplane.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass
