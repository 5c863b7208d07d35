"""A bank's own minimums for a horizontal round, enforced before it contributes anything.

The coordinator chooses how many banks take part and the SecAgg+ parameters; Flower's
``secaggplus_mod`` only checks that a bank has at least ``threshold`` neighbours. A threshold of
1, or a round of one or two banks, would hand the coordinator (or the other bank) an individual
bank's update. So each bank checks, against *its own* scenario:

* at least 3 banks in the federation (2 only if its scenario sets ``allow_two_banks = true``,
  which it logs: each of two banks learns the other's update by subtracting its own);
* a SecAgg+ round's share count at least that minimum, and no larger than the sampled round;
* a reconstruction threshold above half of the shares (so the coordinator cannot collect both
  the mask-key shares and the self-mask shares of one bank);
* share count and threshold equal to what its own scenario implies (explicit values, or the
  automatic choice :func:`fedcredit.horizontal.aggregation.auto_shares` for its bank count);
* at the unmask stage, no node listed both as active and as dead, and none listed twice
  (:meth:`RoundPolicy.check_secagg_unmask`): Flower's ``secaggplus_mod`` would answer such a
  request with a share of that node's self-mask seed *and* of its mask key, and a coordinator
  collecting ``threshold`` such answers could remove every mask from that node's vector.

A violation raises :class:`PolicyViolation` naming the bank, the step and the rule; the bank's
handler turns it into an error reply, and its log says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fedcredit.config import Scenario
from fedcredit.horizontal.aggregation import auto_shares
from fedcredit.horizontal.settings import from_scenario

log = logging.getLogger(__name__)
MIN_BANKS = 3


class PolicyViolation(RuntimeError):
    """The coordinator asked this bank to join a round its own policy forbids."""


@dataclass(frozen=True)
class RoundPolicy:
    party: str
    n_banks: int  # banks in this bank's own scenario
    min_banks: int  # MIN_BANKS, or 2 with allow_two_banks
    aggregation: str
    shares: int  # SecAgg+ share count its own scenario implies (0 if not secagg+)
    threshold: int

    @classmethod
    def of(cls, scenario: Scenario, party: str) -> RoundPolicy:
        s = from_scenario(scenario)
        n = len(scenario.parties_with_role("bank"))
        min_banks = 2 if s.allow_two_banks else MIN_BANKS
        shares = threshold = 0
        if s.aggregation == "secagg+" and n >= 3:
            shares, threshold = auto_shares(n)
            shares = s.secagg.num_shares or shares
            threshold = s.secagg.reconstruction_threshold or threshold
        return cls(party, n, min_banks, s.aggregation, shares, threshold)

    def _violation(self, step: str, rule: str) -> PolicyViolation:
        msg = f"bank {self.party!r} at {step}: {rule}; refusing to contribute"
        log.error(msg)
        return PolicyViolation(msg)

    def check_federation(self, step: str = "horizontal_setup") -> None:
        """At least ``min_banks`` banks in this bank's own scenario."""
        if self.n_banks < self.min_banks:
            raise self._violation(
                step,
                f"{self.n_banks} bank(s) in the federation, this bank's minimum is {self.min_banks} "
                "(set allow_two_banks = true in [horizontal] to accept two, knowing each learns the other's update)",
            )
        if self.n_banks == 2:
            log.warning(
                "bank %r: allow_two_banks = true: a two-bank round lets each bank learn the other's update", self.party
            )

    def check_secagg_setup(self, cfg: Mapping[str, object], step: str = "secagg+ setup") -> None:
        """The SecAgg+ setup stage's parameters (Flower's ``share_num``, ``threshold``, ``sample_num``)."""
        self.check_federation(step)
        if self.aggregation != "secagg+":
            raise self._violation(step, f"a SecAgg+ round, but this bank's scenario says {self.aggregation!r}")
        try:
            shares, threshold = int(cfg["share_num"]), int(cfg["threshold"])  # type: ignore[call-overload]
            sampled = int(cfg.get("sample_num", shares))  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._violation(step, f"malformed SecAgg+ setup config ({exc})") from None
        if sampled < self.min_banks or shares < self.min_banks:
            raise self._violation(
                step, f"SecAgg+ round of {sampled} bank(s) with {shares} shares: fewer than {self.min_banks} banks"
            )
        if 2 * threshold <= shares:
            raise self._violation(
                step, f"SecAgg+ reconstruction threshold {threshold} is not above half of the {shares} shares"
            )
        if (shares, threshold) != (self.shares, self.threshold):
            raise self._violation(
                step,
                f"SecAgg+ parameters (shares {shares}, threshold {threshold}) differ from this bank's scenario "
                f"(shares {self.shares}, threshold {self.threshold})",
            )

    def check_secagg_unmask(self, active: list[int], dead: list[int], step: str = "secagg+ unmask") -> None:
        """The unmask stage's node lists (Flower's ``active_nids``, ``dead_nids``): disjoint, no repeats.

        A bank answers unmask once per round (``secaggplus_mod`` enforces the stage order) with,
        per listed node, a share of its self-mask seed (active) or of its pairwise-mask key (dead);
        a node on both lists would get both revealed by this bank."""
        both = sorted(set(active) & set(dead))
        if both:
            raise self._violation(
                step,
                f"node(s) {both} listed both as active and as dead (answering would reveal shares of both "
                "their self-mask seed and their pairwise-mask key)",
            )
        repeated = sorted({n for n in active + dead if (active + dead).count(n) > 1})
        if repeated:
            raise self._violation(step, f"node(s) {repeated} listed more than once")
