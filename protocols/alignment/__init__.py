"""After PSI: the bank's train/validation/test split plan over the common rows.

The public surface of the package; roles and helpers live in its modules."""

from protocols.alignment.split_plan import (
    SplitPlan,
    SplitReceiver,
    SplitSender,
    make_plan,
)

__all__ = [
    "SplitPlan",
    "SplitReceiver",
    "SplitSender",
    "make_plan",
]
