"""SecureBoost: vertical gradient-boosted trees between a bank (guest) and a credit centre (host).

The guest holds the labels and the Paillier key; the host holds features only. Per tree the
guest encrypts one packed plaintext ``g * 2^hb + h`` per training row (fixed-point logistic
gradient and hessian, :class:`~protocols.secureboost.kernels.GHLayout`) and sends them once.
Level by level, the host adds these ciphertexts into per-node, per-feature, per-bin
histograms (the smaller child of each split directly, the larger one as parent minus smaller;
for each feature the fullest bin is obtained as node total minus the others), turns them into
left sums of its candidate thresholds, drops thresholds that would leave fewer than
``min_samples_leaf`` rows on a side, shuffles each node's candidates, names them with fresh
random opaque ids and packs ``K`` of them per ciphertext (one decryption per ``K``
candidates). The guest decrypts, computes XGBoost gains for the host's and its own candidates
with the very functions of the plaintext reference :mod:`protocols.gbdt.plain` and picks the
best per node. A host split is stored by the guest as its opaque id only; the host answers
with the left/right partition of that node's rows as a bitmask; a guest split is sent to the
host as a bitmask too (the host must know partitions to build the next level's histograms).
All nodes of a level travel in one round trip; see :mod:`protocols.secureboost.messages`.

What each party learns (details in ``docs/protocols/secureboost.md``): the host learns the
partition of training (and validation) rows at every node, and nothing about labels,
gradients or the guest's features; the guest learns, per node, the left sums of the host's
candidate splits (in random order, under random ids), which party split each node, the gains,
and the partitions of the host's chosen splits. ``complete_secure`` grows the first tree on
guest features only, so the host never sees partitions made from the raw labels' first
gradients.

Both parties are restartable (:meth:`to_state` / ``from_state``) and never keep Python
objects across steps that are not in that state; ``checkpoint.py`` says at which states a run
can resume after its coordinator was lost (one per tree) and what each role sends again.

Layout (one file per role, as FATE's ``hetero/secureboost``): ``config.py`` the
``[secureboost]`` settings, ``_base.py`` what both roles share (input checks, state core,
errors), ``guest.py`` and ``host.py`` the two roles, ``kernels.py`` every piece of raw
ciphertext arithmetic (histograms, packing; run in worker processes), ``messages.py`` the
wire messages, ``model.py`` the two model halves, ``scoring.py`` joint prediction.
"""

from __future__ import annotations

from protocols.secureboost.config import SecureBoostConfig, SecureBoostConfigError
from protocols.secureboost.guest import SecureBoostGuest
from protocols.secureboost.host import SecureBoostHost
from protocols.secureboost.model import SecureBoostGuestModel, SecureBoostHostModel, predict_local
from protocols.secureboost.scoring import SecureBoostScoringGuest, SecureBoostScoringHost

__all__ = [
    "SecureBoostConfig",
    "SecureBoostConfigError",
    "SecureBoostGuest",
    "SecureBoostHost",
    "SecureBoostGuestModel",
    "SecureBoostHostModel",
    "SecureBoostScoringGuest",
    "SecureBoostScoringHost",
    "predict_local",
]
