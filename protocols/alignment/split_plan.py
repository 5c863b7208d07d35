"""After PSI: the bank tells the centre how the aligned rows are used (train / validation / test).

Both parties hold the intersection in the same *common order* (PSI guarantees it), so a plan is
just boolean masks over common positions. The bank decides because the split is stratified on
labels it alone holds; the masks reveal which aligned enterprises are held out, nothing about
labels beyond what a random split of that size reveals. The centre checks the plan's length
against its own intersection, so a plan from a different run or step is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.common.party import Envelope, Party, open_envelope


@dataclass
class SplitPlan:
    n_rows: int
    test: np.ndarray  # bool, length n_rows
    validation: np.ndarray  # bool, subset of the non-test rows


def make_plan(test_mask: np.ndarray, *, validation_fraction: float, seed: int) -> SplitPlan:
    """Validation rows are a seeded random share of the training rows (for early stopping)."""
    test = np.asarray(test_mask, dtype=bool)
    rng = np.random.default_rng(seed)
    train_idx = np.flatnonzero(~test)
    n_val = int(round(validation_fraction * train_idx.size))
    val = np.zeros_like(test)
    if n_val:
        val[rng.choice(train_idx, size=n_val, replace=False)] = True
    return SplitPlan(n_rows=int(test.size), test=test, validation=val)


class SplitSender(Party):
    """The bank: sends its plan once."""

    role = "split sender"

    def __init__(self, name: str, peer: str, plan: SplitPlan):
        self.name, self.peer, self.plan = name, peer, plan
        self._done = False

    def start(self) -> list[Envelope]:
        self._done = True
        return [self.send(self.peer, self.plan)]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        raise self._fail(f"the split step expects no messages, got {len(inbox)}")

    @property
    def finished(self) -> bool:
        return self._done


class SplitReceiver(Party):
    """The centre: accepts a plan that matches its own intersection size."""

    role = "split receiver"

    def __init__(self, name: str, peer: str, n_rows: int):
        self.name, self.peer, self.n_rows = name, peer, n_rows
        self.plan: SplitPlan | None = None

    def start(self) -> list[Envelope]:
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        plan = open_envelope(self._one_from(inbox, self.peer, "split plan"), SplitPlan, f"{self.role} {self.name!r}")
        if plan.n_rows != self.n_rows or plan.test.shape != (self.n_rows,) or plan.validation.shape != (self.n_rows,):
            raise self._fail(
                f"split plan covers {plan.n_rows} rows but the intersection has {self.n_rows} (plan from another run?)"
            )
        if plan.test.dtype != bool or plan.validation.dtype != bool or (plan.test & plan.validation).any():
            raise self._fail("malformed split plan (test and validation overlap)")
        self.plan = plan
        return []

    @property
    def finished(self) -> bool:
        return self.plan is not None
