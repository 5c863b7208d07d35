"""What crosses the relay in ECDH-PSI: two messages per party, and the names of the two steps.

Every field is a ``str``, ``int`` or ``bytes`` (:class:`~protocols.psi.engine.PsiParty` checks
the exact types), so a message is a few large buffers on the wire whatever the set size.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL = "fedcredit-psi-v1"
STEP1 = "step 1 (blinded points)"
STEP2 = "step 2 (re-blinded keys)"


@dataclass
class PsiBlinded:
    """Round 1: the sender's ids, hashed, blinded with its secret and shuffled.

    ``points`` is ``count`` concatenated 32-byte X25519 u-coordinates. ``channel_key`` is an
    ephemeral X25519 public key; with the peer's it seals round 2 from the relay
    (:mod:`protocols.common.channel`).
    """

    protocol: str
    sender: str
    session: str
    count: int
    truncate: int
    channel_key: bytes
    points: bytes


@dataclass
class PsiReblinded:
    """Round 2: the receiver's points re-blinded by the sender, in the receiver's order.

    ``sealed`` is the channel recipe over ``count * truncate`` bytes (each double-blinded
    point cut to ``truncate`` bytes) plus a 16-byte tag, so the relay cannot match the two
    round-2 messages.
    """

    protocol: str
    sender: str
    session: str
    count: int
    truncate: int
    sealed: bytes
