"""Per-tree resume points of SecureBoost: where each role can be checkpointed, and how it goes on.

Why a cut spanning two steps: SecureBoost messages alternate (the relay calls only the party
that has mail), so the guest and the host never end a relay step at the same boundary. The
resumable cut after ``t`` completed trees is

* guest: the end of the step in which it finished tree ``t - 1`` and sent ``SbGradients(t)``
  (phase ``wait``, level 0: waiting for the root candidates of tree ``t``);
* host: the end of the next step, in which it applied the guest's last decisions of tree
  ``t - 1`` (its split lookup table so far is complete for trees ``< t``) and answered
  ``SbGradients(t)`` with the root candidates ``SbLevelReply(t, 0)`` (expecting splits, level 0).

Between those two states the only message in flight is the host's level-0 reply: the guest's
gradients were consumed by the host, whose state keeps them (``blob``) with the root
histogram (``hist_blob``). So on resume the guest sends nothing and waits, and the host makes
the level-0 reply again from its state: the same encrypted left sums, freshly shuffled under
fresh opaque ids (the ids of the lost reply are never used in the model, since the guest
decides from the new reply). The guest decrypts the same sums, so every later decision, leaf
value and prediction is the one of an uninterrupted run.

Both roles label the cut ``secureboost@t``; the coordinator records it once both parties have
written it (``parties.vertical.server``), possibly one step apart. No seeded RNG exists to
checkpoint: keys, encryption randomness, shuffles and ids come from the OS CSPRNG by design
(:mod:`protocols.secureboost.config`), and none of them changes a model value.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from protocols.common.party import Envelope
from protocols.secureboost._base import SecureBoostParty
from protocols.secureboost.kernels import Histogram


class _Host(Protocol):
    """What :func:`host_resume` uses of the host (the host module imports this one)."""

    s: Any

    def _fail(self, what: str) -> Exception: ...

    def _tree_stats(self) -> dict[str, Any]: ...

    def _stored_histograms(self) -> dict[int, Histogram]: ...

    def _reply(
        self,
        level: int,
        split_nodes: list[int],
        tbits: list[np.ndarray],
        vbits: list[np.ndarray],
        nodes: list[int],
        hist: dict[int, Histogram],
    ) -> Envelope: ...


def guest_resume_point(guest: SecureBoostParty) -> int | None:
    """Trees completed when the guest has just sent a tree's gradients (tree >= 1), else None.

    ``phase == "wait"`` at level 0 happens exactly once per tree that needs the host: right
    after :meth:`~protocols.secureboost.guest.SecureBoostGuest._begin_tree` sent its
    ``SbGradients`` (a level-0 reply moves the guest to level 1 or to the next tree). Trees the
    guest grew alone (single leaf, ``complete_secure``'s first tree) are counted in ``tree``.
    """
    s = guest.s
    if s.phase == "wait" and s.level == 0 and s.tree >= 1 and not s.pending:
        return int(s.tree)
    return None


def guest_resume(guest: SecureBoostParty) -> list[Envelope]:
    """Nothing to send again: the host consumed ``SbGradients(t)`` before its own checkpoint."""
    if guest_resume_point(guest) is None:
        raise guest._fail("cannot resume: the state is not at a tree boundary")
    return []


def host_resume_point(host: _Host) -> int | None:
    """Trees completed when the host has just answered ``SbGradients(t)`` (t >= 1), else None.

    The host is at level 0 expecting splits exactly once per tree: after the gradients, before
    the guest's level-0 decisions. Its split table then holds every host split of trees < t.
    """
    s = host.s
    if s.phase == "wait" and s.expect == "splits" and s.level == 0 and s.tree >= 1:
        return int(s.tree)
    return None


def host_resume(host: _Host) -> list[Envelope]:
    """The level-0 reply of tree ``t`` again, from the stored root histogram.

    :meth:`~protocols.secureboost.host.SecureBoostHost._reply` re-derives the candidates from
    the histogram (deterministic ciphertext arithmetic) and shuffles and names them afresh; it
    also replaces the candidate table the lost reply's ids pointed to, so those ids are void.
    """
    s = host.s
    if host_resume_point(host) is None:
        raise host._fail("cannot resume: the state is not at a tree boundary")
    if [int(v) for v in s.hist_nodes.tolist()] != [0] or not s.hist_blob:
        raise host._fail("cannot resume: no stored root histogram for this tree (state lost?)")
    stats = host._tree_stats()
    stats["candidates"], stats["packed"] = 0, 0  # counted again by the reply made now
    root = host._stored_histograms()
    return [host._reply(0, [], [], [], [0], root)]
