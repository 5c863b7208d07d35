"""Both PSI parties in one process tree, through the wire encoding: tests, benchmarks, demos."""

from __future__ import annotations

import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from protocols.common import wire
from protocols.psi.engine import DEFAULT_CHUNK, DEFAULT_TRUNCATE, PsiParty, PsiResult, Role
from protocols.psi.kernels import SerialMapper, open_pool
from protocols.psi.prepare import Allowed, Validator

Outbox = queue.Queue[bytes | None]


def run_local(
    ids_a: Sequence[object],
    ids_b: Sequence[object],
    *,
    session: str | bytes = "local",
    allowed_a: Allowed | None = None,
    allowed_b: Allowed | None = None,
    validator: Validator | None = None,
    truncate: int = DEFAULT_TRUNCATE,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    transcript: list[tuple[str, str, bytes]] | None = None,
) -> tuple[PsiResult, PsiResult]:
    """Run both parties in this process tree, through the wire encoding, as in deployment.

    Each party runs in its own thread and the two exchange ``wire`` bytes through queues, so
    (as on two machines) one party's Python work overlaps the other's scalar
    multiplications and neither waits at the end of the other's phase. Both share one
    worker pool of ``workers`` processes. ``transcript``, if given, receives
    ``(sender, message type, bytes)`` for every message: exactly what a relay would see.
    """
    workers = workers or os.cpu_count() or 1
    pool: Any = open_pool(workers) if workers > 1 else SerialMapper()
    to_a: Outbox = queue.Queue()
    to_b: Outbox = queue.Queue()
    common: dict[str, Any] = dict(
        session=session, validator=validator, truncate=truncate, pool=pool, chunk_size=chunk_size
    )

    def relay(msg: Any, outbox: Outbox) -> None:
        data = wire.encode(msg)
        if transcript is not None:
            transcript.append((msg.sender, type(msg).__name__, data))
        outbox.put(data)

    def drive(
        role: Role, ids: Sequence[object], allowed: Allowed | None, inbox: Outbox, outbox: Outbox
    ) -> PsiResult | None:
        try:
            party = PsiParty(role, ids, allowed=allowed, **common)
            relay(party.start(), outbox)
            for _ in range(2):
                data = inbox.get()
                if data is None:  # the peer failed; its exception is reported instead
                    return None
                reply = party.handle(data)
                if reply is not None:
                    relay(reply, outbox)
            return party.result()
        except BaseException:
            outbox.put(None)
            raise

    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="psi") as ex:
            fa = ex.submit(drive, "A", ids_a, allowed_a, to_a, to_b)
            fb = ex.submit(drive, "B", ids_b, allowed_b, to_b, to_a)
            for fut in (fa, fb):
                exc = fut.exception()
                if exc is not None:
                    raise exc
            res_a, res_b = fa.result(), fb.result()
        assert res_a is not None and res_b is not None
        return res_a, res_b
    finally:
        if not isinstance(pool, SerialMapper):
            pool.close()
            pool.join()
