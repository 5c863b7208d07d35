"""The sealed bodies of joint inference: only the bank and the centre ever see these.

The relay carries them inside :class:`~protocols.inference.messages.InferenceRequest` and
:class:`~protocols.inference.messages.InferencePartials`, sealed with :mod:`protocols.common.channel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.inference.messages import InferenceError
from protocols.psi.ids import USCC_LEN


@dataclass
class RequestBody:
    """What the bank asks: ``usccs`` is ``count * 18`` ASCII bytes (consented applicants only)."""

    purpose: str
    model_type: str
    count: int
    usccs: bytes
    split_ids: Any  # uint64 host split ids the bank's trees use (SecureBoost; empty for LR)
    tokens: bytes = b""  # each USCC's consent token, newline-joined (b"" line: none): the centre re-checks


@dataclass
class PartialsBody:
    """The centre's answer, one slot per requested USCC (zeros where not found).

    ``scores``: ``u_c`` per USCC (LR). ``bits``: packed left/right bits, ``count x len(split_ids)``
    row-major (SecureBoost). Fixed shapes, so the reply's size does not depend on how many
    enterprises were found.
    """

    count: int
    found: Any  # bool (count,)
    scores: Any  # float64 (count,) or empty
    n_bits: int
    bits: Any  # uint8 packed bits or empty
    refused: Any = None  # bool (count,): over the centre's quota (logged there), not answered
    consent_refused: Any = None  # bool (count,): the centre's own consent re-check refused it, not answered


def pack_usccs(usccs: list[str]) -> bytes:
    """Fixed-width ASCII (18 bytes per code); codes are normalised upper-case USCCs."""
    out = "".join(usccs).encode("ascii")
    if len(out) != USCC_LEN * len(usccs):
        raise InferenceError(f"every USCC must be {USCC_LEN} ASCII characters")
    return out


def unpack_usccs(raw: bytes, count: int) -> list[str]:
    if not isinstance(raw, bytes) or len(raw) != USCC_LEN * count:
        raise InferenceError(
            f"request holds {len(raw) if isinstance(raw, bytes) else '?'} bytes of USCCs, expected {USCC_LEN} x {count}"
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InferenceError("request USCCs are not ASCII") from None
    return [text[i : i + USCC_LEN] for i in range(0, len(text), USCC_LEN)]
