"""Two-party vertical logistic regression (bank = guest with labels, centre = host); each party owns its Paillier key.

The public surface of the package. Where each part lives:

* :mod:`~protocols.hetero_lr.bank`: :class:`BankLR`, the guest (labels, intercept, early stopping);
* :mod:`~protocols.hetero_lr.centre`: :class:`CentreLR`, the host (features only);
* :mod:`~protocols.hetero_lr.scoring`: :class:`BankScorer`, :class:`CentreScorer` (joint scores);
* :mod:`~protocols.hetero_lr._base`: what both training roles share (setup, masks, optimiser, state);
* :mod:`~protocols.hetero_lr.messages`: every message on the wire;
* :mod:`~protocols.hetero_lr.config`: the ``[lr]`` section (:class:`HeteroLRConfig`);
* :mod:`~protocols.hetero_lr.schedule`: batch schedule and class weights (pure functions);
* :mod:`~protocols.hetero_lr.scales`: fixed-point scales and bounds;
* :mod:`~protocols.hetero_lr.kernels`: the raw ciphertext arithmetic not offered by
  :mod:`protocols.paillier`; :mod:`~protocols.hetero_lr.keys`: the per-process private-key cache.

How the protocol works, and what each party sees: ``docs/protocols/hetero-lr.md``.
"""

from protocols.hetero_lr.bank import BankLR
from protocols.hetero_lr.centre import CentreLR
from protocols.hetero_lr.config import MIN_BATCH_ROWS, HeteroLRConfig, HeteroLRConfigError
from protocols.hetero_lr.messages import BANK, CENTRE, PROTOCOL_ID
from protocols.hetero_lr.scales import FRAC_BITS_S, LOGIT_LIMIT_BITS, S_INT_BITS, STAT_SEC_BITS, X_INT_BITS
from protocols.hetero_lr.schedule import (
    ROWS_PER_FEATURE,
    balanced_class_weights,
    batch_schedule,
    batches_per_epoch,
    min_batch_rows,
    required_batch_rows,
)
from protocols.hetero_lr.scoring import BankScorer, CentreScorer, sigmoid

__all__ = [
    "BANK",
    "BankLR",
    "BankScorer",
    "CENTRE",
    "CentreLR",
    "CentreScorer",
    "FRAC_BITS_S",
    "HeteroLRConfig",
    "HeteroLRConfigError",
    "LOGIT_LIMIT_BITS",
    "MIN_BATCH_ROWS",
    "PROTOCOL_ID",
    "ROWS_PER_FEATURE",
    "STAT_SEC_BITS",
    "S_INT_BITS",
    "X_INT_BITS",
    "balanced_class_weights",
    "batch_schedule",
    "batches_per_epoch",
    "min_batch_rows",
    "required_batch_rows",
    "sigmoid",
]
