"""What crosses the relay in unbalanced PSI (all fields ``str``, ``int`` or ``bytes``).

Once per bank and key period: :class:`UbCacheRequest` (bank -> centre), :class:`UbCache` (centre -> bank). Per run: :class:`UbQuery`
(bank -> centre), :class:`UbEvaluated` (centre -> bank), :class:`UbMatches` (bank -> centre).
Everything but the query's blinded points is sealed with :mod:`protocols.common.channel`.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL = "fedcredit-ubpsi-v1"
STEP_REQUEST = "cache request (bank's cache key)"
STEP_CACHE = "cache (centre's prepared tokens)"
STEP_QUERY = "step 1 (bank's blinded points)"
STEP_EVAL = "step 2 (centre's evaluations)"
STEP_MATCH = "step 3 (matched positions)"


@dataclass
class UbCacheRequest:
    """A bank without this period's cache asks for one, sealed to ``bank_key`` (a fresh key)."""

    protocol: str
    period: str
    bank: str
    count: int  # always 0: keeps the shape every message of this protocol is checked with
    bank_key: bytes


@dataclass
class UbCache:
    """The centre's tokens ``trunc_t(H(c)^k_C)`` of the firms this bank may match, shuffled.

    ``sealed`` holds ``count * truncate`` bytes (+16) sealed to the bank's ``bank_key``.
    """

    protocol: str
    period: str
    bank: str
    count: int
    truncate: int
    channel_key: bytes
    bank_key: bytes
    sealed: bytes


@dataclass
class UbQuery:
    """The bank's ids of this run, hashed with the period salt, blinded with a fresh ``k_B``."""

    protocol: str
    period: str
    session: str
    bank: str
    count: int
    channel_key: bytes
    points: bytes
    cache: str  # SHA-256 of the bank's cache: a centre whose grant differs answers with a fresh UbCache


@dataclass
class UbEvaluated:
    """``P^k_C`` for each query point, in the query's order, sealed (32 bytes each + 16)."""

    protocol: str
    period: str
    session: str
    count: int
    channel_key: bytes
    sealed: bytes


@dataclass
class UbMatches:
    """Positions (in the bank's cache) of the matched tokens, sorted by token; sealed uint32s."""

    protocol: str
    period: str
    session: str
    count: int
    sealed: bytes
