"""The coordinator's generic protocol loop over Flower.

The coordinator does not know PSI from hetero-LR: it asks each node to start a *phase*, then
forwards every envelope to its recipient until no envelope is in flight, then asks each node to
finish the phase (persist results, report aggregate numbers). Every step is one Flower round
trip to all nodes that have mail (~5 s in deployment), so protocols are designed to need few.
What crossed each boundary is recorded in the ledger; envelopes themselves are opaque bytes to
the coordinator (ciphertexts or blinded points), and never stored.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flwr.app import Message
from flwr.serverapp import Grid

from parties.common import transport
from parties.common.exchange import PARAM, ExchangeHub, StreamOutcome
from parties.common.recorder import Recorder
from parties.common.transport import NodeReply
from protocols.common.party import Envelope

log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """A node failed, timed out or misbehaved; the message names the party and the step."""

    def __init__(self, party: str, step: str, reason: str):
        super().__init__(f"party {party!r} failed at step {step!r}: {reason}")
        self.party, self.step, self.reason = party, step, reason


def wait_for_nodes(grid: Grid, expected: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= expected:
            return ids
        if time.monotonic() > deadline:
            raise RunFailed(
                "coordinator", "connect", f"only {len(ids)} of {expected} party nodes connected within {timeout:.0f} s"
            )
        time.sleep(0.2)


class Relay:
    def __init__(
        self,
        grid: Grid,
        nodes: dict[str, int],
        recorder: Recorder,
        *,
        timeout: float = 600.0,
        on_step: Callable[[str, dict[str, NodeReply]], None] | None = None,
        session: dict | None = None,
    ):
        self.grid = grid
        self.nodes = nodes  # party name -> Flower node id
        self.recorder = recorder
        self.timeout = timeout
        self.on_step = on_step
        self.session = session or {}  # run id and nodes' hello nonces, announced with every request
        self.round = 0
        self.steps = 0
        self.prefix = ""  # "r<n>:" on every step name of a run's n-th resumed segment
        # streamed steps (parties.common.exchange): the phases whose steps stream, and the hub
        self.exchange: ExchangeHub | None = None
        self.streamed: Collection[str] = ()
        self.streamed_steps = 0

    @property
    def exchanges(self) -> int:
        """Exchanges (sub-steps) run inside streamed steps so far."""
        return 0 if self.exchange is None else self.exchange.exchanges

    def _record_exchange(self, step: str, round_: int, messages: list[dict], participants: list[str]) -> None:
        self.recorder.step(step, round_, messages, participants=participants)

    def _send(self, msgs: list[Message], streamed: bool) -> list[Message]:
        """The grid round trip; a streamed step may last an epoch, so it is bounded by the hub's
        liveness (no exchange for ``timeout`` seconds aborts it) rather than by one timeout."""
        if not streamed or self.exchange is None:
            return list(self.grid.send_and_receive(msgs, timeout=self.timeout))
        hub = self.exchange
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-stream")
        fut = pool.submit(lambda: list(self.grid.send_and_receive(msgs, timeout=None)))
        stalled_at: float | None = None
        try:
            while True:
                try:
                    return fut.result(timeout=1.0)
                except FutureTimeout:
                    pass
                if hub.idle_seconds() > self.timeout:
                    hub.abort("coordinator", f"no exchange for {self.timeout:.0f} s")
                if hub.session is not None and hub.session.done and stalled_at is None:
                    stalled_at = time.monotonic()
                if stalled_at is not None and time.monotonic() - stalled_at > max(60.0, self.timeout / 10):
                    log.warning("streamed step ended but not every node answered; giving up on them")
                    return []  # the nodes that did not answer are named below
        finally:
            pool.shutdown(wait=False)

    def call(
        self,
        kind: str,
        phase: str,
        step: str,
        requests: dict[str, tuple[dict, list[Envelope]]],
        heads: dict[str, dict] | None = None,
        *,
        streamed: bool = False,
    ) -> dict[str, NodeReply]:
        """One Flower round trip to the named parties; records the step in the ledger.

        ``heads``: per party, the signed tree head (and its proofs) it must check and co-sign
        before doing the step (given at each phase's init: one head per phase boundary).
        ``streamed``: the requests carry invitations to the hub's open session; each party's
        reply then carries, as its outbox, what it posted in the stream's last exchange
        (recorded there, delivered by the next step)."""
        msgs, order = [], []
        heads = heads or {}
        for name, (params, inbox) in requests.items():
            msgs.append(
                Message(
                    transport.request(
                        phase=phase, step=step, params=params, inbox=inbox, session=self.session, tlog=heads.get(name)
                    ),
                    dst_node_id=self.nodes[name],
                    message_type=kind,
                    group_id=step,
                )
            )
            order.append(name)
        by_node = {m.metadata.dst_node_id: p for m, p in zip(msgs, order)}
        replies = self._send(msgs, streamed)
        outcome = self.exchange.close() if streamed and self.exchange is not None else StreamOutcome()
        # Flower answers for an unreachable node itself (from the SuperLink's id), so map replies
        # to the message they answer first, and fall back to the sender id.
        by_message = {m.metadata.message_id: p for m, p in zip(msgs, order) if m.metadata.message_id}
        self.steps += 1
        out: dict[str, NodeReply] = {}
        described: list[dict] = []
        failures: list[tuple[str, str]] = []
        for rep in replies:
            party = by_message.get(rep.metadata.reply_to_message_id) or by_node.get(rep.metadata.src_node_id)
            if party is None or party in out:
                continue
            if rep.has_error():
                failures.append((party, rep.error.reason or f"error code {rep.error.code}"))
                continue
            try:
                outbox, finished, summary, summary_bytes = transport.read_reply(rep.content)
                for env in outbox:
                    if env.sender != party:
                        raise ValueError(f"sent an envelope claiming to be from {env.sender!r}")
                    if env.recipient not in self.nodes:
                        raise ValueError(f"addressed unknown party {env.recipient!r}")
            except Exception as exc:  # noqa: BLE001 - a malformed reply is that party's failure
                failures.append((party, f"malformed reply: {exc}"))
                continue
            described.extend(env.describe() for env in outbox)
            described.append(
                {
                    "sender": party,
                    "recipient": "coordinator",
                    "kind": "Summary",
                    "size": len(summary_bytes),
                    "sha256": hashlib.sha256(summary_bytes).hexdigest(),
                }
            )
            forwarded: list[Envelope] = list(outbox)  # signed envelopes, forwarded unchanged
            out[party] = NodeReply(forwarded, finished, summary)
        failures.extend(
            (p, f"no reply within {self.timeout:.0f} s (node down or too slow)")
            for p in order
            if p not in out and p not in {f[0] for f in failures}
        )
        # Record what did cross boundaries in this step before stopping, so the ledger still
        # matches every node's egress log even when the step failed.
        metrics: dict[str, dict] = {p: r.summary["metrics"] for p, r in out.items() if r.summary.get("metrics")}
        self.recorder.step(step, self.round, described, metrics=metrics, participants=order)
        if metrics:
            log.info(
                "%s: %s",
                step,
                "; ".join(
                    f"{p} " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
                    for p, m in metrics.items()
                ),
            )
        if outcome.failure is not None and (outcome.failure[0] != "coordinator" or not failures):
            self._fail(*outcome.failure)  # the root cause: the others were aborted because of it
        if failures:
            self._fail(failures[0][0], step, failures[0][1])
        for party, r in out.items():
            r.outbox.extend(e for e in outcome.leftover if e.sender == party)
        if self.on_step:
            self.on_step(step, out)
        return out

    def close_log(self, heads: dict[str, dict]) -> None:
        """After ``run_end``: give each party the final head to co-sign, and let it end its node log.

        Not recorded (the ledger is closed); a party that does not answer is only logged here and
        shows at ``fedcredit ledger verify`` (its node log has no end record)."""
        msgs = [
            Message(
                transport.request(phase="close", step="close", session=self.session, tlog=heads[name]),
                dst_node_id=nid,
                message_type=transport.CLOSE,
                group_id="close",
            )
            for name, nid in self.nodes.items()
            if name in heads
        ]
        answered = set()
        for rep in self.grid.send_and_receive(msgs, timeout=min(self.timeout, 60.0)):
            answered.add(rep.metadata.src_node_id)
            if rep.has_error():
                log.warning("final tree head refused: %s", rep.error.reason)
        missing = [n for n, nid in self.nodes.items() if nid not in answered and n in heads]
        if missing:
            log.warning("no answer to the final tree head from %s", ", ".join(missing))

    def _fail(self, party: str, step: str, reason: str) -> None:
        self.recorder.event("failure", {"party": party, "step": step, "reason": reason[:2000]})
        raise RunFailed(party, step, reason)

    def run_phase(self, phase: str, params: dict[str, dict], *, max_steps: int = 100_000) -> dict[str, dict]:
        """init -> relay steps until quiet -> results; returns each party's finish summary.

        A party that finishes during a step reports its result in that reply; only parties that
        did not (none, in the protocols here) get a separate finish message.
        """
        parties = list(params)
        results: dict[str, dict] = {}

        def absorb(replies: dict[str, NodeReply]) -> None:
            for p, r in replies.items():
                if transport.FINISHED in r.summary:
                    results[p] = r.summary[transport.FINISHED]

        heads = self.recorder.announce_heads(parties)  # the ledger so far, co-signed before the phase starts
        replies = self.call(
            transport.INIT, phase, f"{self.prefix}{phase}/init", {p: (params[p], []) for p in parties}, heads
        )
        absorb(replies)
        finished = {p: r.finished for p, r in replies.items()}
        n = 0
        while True:
            inflight = [e for r in replies.values() for e in r.outbox]
            if not inflight:
                break
            n += 1
            if n > max_steps:
                raise RunFailed(parties[0], f"{self.prefix}{phase}/{n}", "protocol did not converge")
            inbox: dict[str, list[Envelope]] = {}
            for env in inflight:
                inbox.setdefault(env.recipient, []).append(env)
            self.round = n
            name = f"{self.prefix}{phase}/{n}"
            if self.exchange is not None and phase in self.streamed:
                invites = self.exchange.open(
                    name, n, sorted(inbox), set(self.nodes), self._record_exchange, self.timeout
                )
                requests = {p: ({PARAM: invites[p]}, inbox[p]) for p in inbox}
                replies = self.call(transport.STEP, phase, name, requests, streamed=True)
                self.streamed_steps += 1
            else:
                replies = self.call(transport.STEP, phase, name, {p: ({}, inbox[p]) for p in inbox})
            absorb(replies)
            finished.update({p: r.finished for p, r in replies.items()})
        unfinished = [p for p, done in finished.items() if not done]
        if unfinished:
            raise RunFailed(unfinished[0], f"{self.prefix}{phase}/{n}", "stopped sending but did not finish the phase")
        remaining = [p for p in parties if p not in results]
        if remaining:
            done = self.call(
                transport.FINISH, phase, f"{self.prefix}{phase}/finish", {p: (params[p], []) for p in remaining}
            )
            results.update({p: r.summary for p, r in done.items()})
        log.info("phase %s done: %d relay steps (%d exchanges streamed in all)", phase, n, self.exchanges)
        return results
