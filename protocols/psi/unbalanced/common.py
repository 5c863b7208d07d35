"""Helpers both unbalanced-PSI roles share: worker mapping, errors, message checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from protocols.common import wire
from protocols.psi.engine import PsiProtocolError
from protocols.psi.kernels import ChunkMapper, LowOrderPoint
from protocols.psi.prepare import MAX_ITEMS
from protocols.psi.unbalanced.messages import PROTOCOL

M = TypeVar("M")
_TYPES = {"str": str, "int": int, "bytes": bytes}


def run_chunks(
    mapper: ChunkMapper, func: Callable[[Any], bytes], tasks: Iterable[Any], fail: Callable[[str], Exception]
) -> bytes:
    """``b"".join`` of ``func`` over ``tasks`` on ``mapper``; a low-order point becomes ``fail(...)``."""
    try:
        return b"".join(mapper.imap(func, tasks))
    except LowOrderPoint as exc:
        raise fail(f"a point is of low order ({exc}); the message is not honest") from None


def expect(who: str, step: str, msg: object, cls: type[M], period: str) -> M:
    """``msg`` (or its wire bytes) as a well-typed ``cls`` of this protocol and key period."""
    if isinstance(msg, (bytes, bytearray, memoryview)):
        try:
            msg = wire.decode(bytes(msg), cls)
        except wire.WireError as exc:
            raise PsiProtocolError(f"{who}, {step}: {exc}") from None
    if not isinstance(msg, cls):
        raise PsiProtocolError(f"{who}, {step}: expected {cls.__name__}, got {type(msg).__name__}")
    m: Any = msg
    for f in dataclasses.fields(m):
        value, want = getattr(m, f.name), _TYPES[str(f.type)]
        if type(value) is not want:
            raise PsiProtocolError(f"{who}, {step}: field {f.name} is {type(value).__name__}, expected {want.__name__}")
    if m.protocol != PROTOCOL:
        raise PsiProtocolError(f"{who}, {step}: protocol {m.protocol!r}, expected {PROTOCOL!r}")
    if m.period != period:
        raise PsiProtocolError(f"{who}, {step}: key period {m.period!r}, expected {period!r}")
    if not 0 <= m.count <= MAX_ITEMS:
        raise PsiProtocolError(f"{who}, {step}: bad count {m.count!r}")
    return msg
