"""Wire messages of two-party vertical logistic regression (:mod:`protocols.hetero_lr`).

Each message is a dataclass encoded with :mod:`protocols.common.wire`; one class per direction and
step so the receiver decodes with the class it expects and a message from the wrong step is
refused by type. What may appear in each field is the privacy contract tested in
``tests/test_hetero_lr.py``:

* every per-sample field is a block of Paillier ciphertexts (``bytes``, fixed width
  ``ciphertext_bytes`` each) under the *receiver's peer's* or the *sender's own* key;
* plaintext numbers are either sizes/settings or masked aggregates whose length is a feature
  count (never a row count);
* ``key_fingerprint`` names the public key the ciphertexts were made under, so a party that
  encrypted under the wrong key is caught before any homomorphic work.

``round`` is the global batch index (epoch * batches_per_epoch + batch); it is checked on
every message so a replayed or out-of-order message is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_ID = "fedcredit/hetero-lr/1"
BANK = "bank"  # the role names announced in LRHello.role
CENTRE = "credit_centre"


@dataclass
class LRHello:
    """Step 0, both directions: own public key, sizes and the settings both sides must share."""

    protocol: str
    role: str  # BANK or CENTRE
    public_key: bytes
    n_train: int
    n_val: int
    n_features: int  # raw feature count (the bank's intercept column is not counted)
    shared: dict = field(default_factory=dict)  # HeteroLRConfig.shared_settings(): schedule and encodings


@dataclass
class BankPartials:
    """Bank -> centre, phase A of a round: ``Enc_bank(s * (0.25 u_bank - 0.5 y))`` per batch row.

    ``sample_weights`` (``Enc_bank(s)``) only when class weighting is on; ``val_*`` only in the
    first round after an epoch ends (the validation-loss exchange rides along).
    """

    round: int
    key_fingerprint: str
    residual: bytes
    sample_weights: bytes
    val_residual: bytes
    val_sample_weights: bytes


@dataclass
class CentrePartials:
    """Centre -> bank, phase A of a round: ``Enc_centre(0.25 u_centre)`` per batch row."""

    round: int
    key_fingerprint: str
    scores: bytes


@dataclass
class CentreMaskedGradient:
    """Centre -> bank, phase B: ``Enc_bank(X_c^T (s*d) + R_c)`` (one per centre feature).

    ``train_loss``: one ciphertext of the epoch's aggregate cross term of the Taylor loss, sent
    with the last batch of each epoch (empty otherwise); ``val_loss``: the same over the
    validation rows, sent when a ``BankPartials`` carried ``val_residual``.
    """

    round: int
    key_fingerprint: str
    gradient: bytes
    train_loss: bytes
    val_loss: bytes


@dataclass
class BankMaskedGradient:
    """Bank -> centre, phase B: ``Enc_centre(X_b^T (s*d) + R_b)`` (bank features + intercept)."""

    round: int
    key_fingerprint: str
    gradient: bytes


@dataclass
class CentreMaskedPlain:
    """Centre -> bank, phase C: the bank's masked gradient, decrypted (``n_bank_features + 1`` ints)."""

    round: int
    values: list


@dataclass
class BankMaskedPlain:
    """Bank -> centre, phase C: the centre's masked gradient decrypted, plus training control.

    ``improved``: the epoch that just ended is the best so far on validation loss (the centre
    keeps its weights from that point); ``finish``: training ends now, this round's update is
    discarded and each party keeps its best (or last) weights. ``values`` is empty when
    finishing or when the round carried no batch.
    """

    round: int
    values: list
    improved: bool
    finish: bool


@dataclass
class ScoreRequest:
    """Bank -> centre (scoring): score these rows of the aligned scoring set."""

    protocol: str
    rows: object  # int64 numpy array of row positions in the common (PSI) order


@dataclass
class PartialScores:
    """Centre -> bank (scoring): ``u_centre = X_centre[rows] @ w_centre`` in plaintext.

    This is the documented evaluation/inference leak (as in FATE): the bank learns the centre's
    partial score of each row it asks to score, nothing else.
    """

    protocol: str
    scores: object  # float64 numpy array, one per requested row
