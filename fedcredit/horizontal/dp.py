"""Differential-privacy accounting for horizontal runs (bank-level DP).

Both DP options add Gaussian noise once per round to a clipped quantity, with every bank
taking part in every round (no sub-sampling amplification is claimed). R-fold composition of
Gaussian mechanisms with noise multiplier z is exactly mu-GDP with ``mu = sqrt(R) / z``
(Dong, Roth & Su 2019), whose (epsilon, delta) curve is
``delta(eps) = Phi(-eps/mu + mu/2) - exp(eps) * Phi(-eps/mu - mu/2)``; we invert it numerically.

* ``central``: Flower's DifferentialPrivacyClientSideFixedClipping adds N(0, (z C / m)^2) to the
  aggregate of m banks' clipped updates. With sample-count weights w_k the aggregate moves by at
  most ``C * max_k w_k`` when one bank's update changes, so the effective multiplier is
  ``z / (m * max_k w_k)`` (= z for equal banks). We report epsilon for that.
* ``local``: Flower's LocalDpMod clips each update to C and adds N(0, sigma^2) with
  ``sigma = s sqrt(2 ln(1.25/delta)) / eps_round``; two clipped updates differ by <= 2C, so we set
  s = 2C by default. Reported: the per-round (eps, delta), basic composition (R eps, R delta)
  and the tighter GDP composition at the same total delta.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy.special import log_ndtr


def _gdp_delta(eps: float, mu: float) -> float:
    a = log_ndtr(-eps / mu + mu / 2)
    b = eps + log_ndtr(-eps / mu - mu / 2)
    return float(math.exp(a) - math.exp(b)) if b < a else 0.0


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest epsilon with ``delta(eps) <= delta`` for a mu-GDP mechanism."""
    if mu <= 0:
        return 0.0
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    lo, hi = 0.0, 1.0
    while _gdp_delta(hi, mu) > delta:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(200):
        mid = (lo + hi) / 2
        if _gdp_delta(mid, mu) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def composed_gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon after ``rounds`` Gaussian releases with noise multiplier z (std / sensitivity)."""
    if noise_multiplier <= 0:
        return math.inf
    return gdp_epsilon(math.sqrt(rounds) / noise_multiplier, delta)


@dataclass(frozen=True)
class DpReport:
    kind: str
    rounds: int
    delta: float
    epsilon: float  # the guarantee we state (tightest valid bound)
    noise_multiplier: float  # effective z per round (std / sensitivity)
    clipping_norm: float
    epsilon_per_round: float | None = None
    epsilon_basic_composition: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def central_report(
    noise_multiplier: float, clipping_norm: float, rounds: int, delta: float, sample_counts: list[int]
) -> DpReport:
    m = len(sample_counts)
    total = float(sum(sample_counts))
    w_max = max(sample_counts) / total
    z_eff = noise_multiplier / (m * w_max)
    eps = composed_gaussian_epsilon(z_eff, rounds, delta)
    return DpReport(
        kind="central",
        rounds=rounds,
        delta=delta,
        epsilon=eps,
        noise_multiplier=z_eff,
        clipping_norm=clipping_norm,
        epsilon_per_round=composed_gaussian_epsilon(z_eff, 1, delta),
        note="bank-level DP against anyone seeing the released models; all banks in "
        "every round (no sub-sampling amplification)",
    )


def local_report(epsilon_round: float, delta: float, clipping_norm: float, sensitivity: float, rounds: int) -> DpReport:
    z = math.sqrt(2 * math.log(1.25 / delta)) / epsilon_round  # sigma / sensitivity
    basic = rounds * epsilon_round
    gdp = composed_gaussian_epsilon(z, rounds, rounds * delta)
    note = "bank-level local DP: holds even against the coordinator seeing individual updates"
    if epsilon_round > 1:
        note += "; the classic Gaussian calibration is only proven for eps <= 1 per round"
    return DpReport(
        kind="local",
        rounds=rounds,
        delta=rounds * delta,
        epsilon=min(basic, gdp),
        noise_multiplier=z,
        clipping_norm=clipping_norm,
        epsilon_per_round=epsilon_round,
        epsilon_basic_composition=basic,
        note=note + f" (sensitivity {sensitivity:g})",
    )
