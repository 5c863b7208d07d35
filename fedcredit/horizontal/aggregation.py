"""Aggregation helpers shared by every mode: update validation, weighted averaging, and the
choice of SecAgg+ quantisation parameters from the model and the number of banks.

Validation is where a bad update is stopped: NaN/Inf, a wrong number or shape of arrays, or
values outside the range the aggregation can represent. The error names the bank, so the
coordinator can record the rejection and carry on with the other banks. In ``plain`` mode the
coordinator validates; under ``secagg+`` and ``ckks`` it cannot see updates, so each bank runs
the same checks on its own update before masking/encrypting it and fails loudly instead of
letting SecAgg+ clip silently or CKKS wrap around.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class UpdateRejected(ValueError):
    """A bank's update failed validation; ``party`` and ``reason`` say which and why."""

    def __init__(self, party: str, reason: str) -> None:
        self.party = party
        self.reason = reason
        super().__init__(f"UpdateRejected: {party}: {reason}")


def validate_update(
    party: str, arrays: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]], bound: float, scale: float = 1.0
) -> None:
    """Raise :class:`UpdateRejected` unless ``arrays`` match ``shapes``, are finite and satisfy
    ``|value * scale| <= bound`` (``scale`` is the SecAgg+ weight factor; 1 otherwise)."""
    if len(arrays) != len(shapes):
        raise UpdateRejected(party, f"wrong shape: {len(arrays)} arrays, the model has {len(shapes)}")
    for i, (arr, shape) in enumerate(zip(arrays, shapes)):
        a = np.asarray(arr)
        if tuple(a.shape) != tuple(shape):
            raise UpdateRejected(party, f"wrong shape: array {i} is {tuple(a.shape)}, expected {tuple(shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise UpdateRejected(party, f"array {i} has dtype {a.dtype}, expected floating point")
        finite = np.isfinite(a)
        if not finite.all():
            bad = a[~finite].ravel()[0]
            raise UpdateRejected(
                party, f"array {i} contains {'NaN' if np.isnan(bad) else 'Inf'} ({int((~finite).sum())} values)"
            )
        peak = float(np.max(np.abs(a))) * scale if a.size else 0.0
        if peak > bound:
            raise UpdateRejected(party, f"out of range: |value| {peak:.4g} in array {i} exceeds the bound {bound:.4g}")


def weighted_average(updates: Sequence[Sequence[np.ndarray]], weights: Sequence[float]) -> list[np.ndarray]:
    """Sum_k w_k * update_k / Sum_k w_k, array by array (FedAvg with sample-count weights)."""
    if not updates:
        raise ValueError("no updates to aggregate")
    w = np.asarray(weights, dtype=np.float64)
    if (w <= 0).any():
        raise ValueError("weights must be positive")
    total = w.sum()
    return [
        sum(wk * np.asarray(u[i], dtype=np.float64) for wk, u in zip(w, updates)) / total
        for i in range(len(updates[0]))
    ]


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)


def unflatten(vec: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    sizes = [int(np.prod(s)) if s else 1 for s in shapes]
    if vec.size != sum(sizes):
        raise ValueError(f"vector has {vec.size} values, the model needs {sum(sizes)}")
    out, start = [], 0
    for s, n in zip(shapes, sizes):
        out.append(vec[start : start + n].reshape(s).copy())
        start += n
    return out


def pow2_at_least(x: float) -> float:
    """Smallest power of two >= x (>= 2**-10)."""
    return float(2.0 ** math.ceil(math.log2(max(x, 2.0**-10))))


def auto_clipping_range(global_arrays: Sequence[np.ndarray], headroom: float, minimum: float) -> float:
    """SecAgg+ clipping range for the next round: a power of two at least ``headroom`` times the
    largest global weight (local training moves weights only a little per round). Each bank
    checks its own update against it and fails loudly if it does not fit."""
    peak = max((float(np.max(np.abs(a))) for a in global_arrays if np.asarray(a).size), default=0.0)
    return pow2_at_least(max(minimum, headroom * peak))


def auto_quantization_range(n_clients: int, modulus_range: int) -> int:
    """Largest power of two Q with ``n_clients * Q`` below half the modulus (no wrap-around of
    the masked sum, the sample-count factor included), capped at 2**28 so Flower's int32
    quantised values never overflow."""
    if n_clients < 1:
        raise ValueError("need at least one client")
    q = modulus_range // (2 * 2 ** math.ceil(math.log2(max(n_clients, 1))))
    return int(min(q, 2**28))


def auto_shares(n_clients: int) -> tuple[int, int]:
    """(num_shares, reconstruction_threshold) for SecAgg+: everyone shares with everyone up to
    11 banks, then an odd neighbourhood of ~2 log2 K + 1 (Bell et al. 2020). The threshold is a
    strict majority of the shares, so the coordinator can never collect both kinds of shares
    of one bank, while a minority of dropouts is still tolerated."""
    if n_clients < 3:
        raise ValueError("SecAgg+ needs at least 3 clients")
    if n_clients <= 11:
        shares = n_clients
    else:
        shares = min(n_clients, 2 * math.ceil(math.log2(n_clients)) + 1)
        shares += 1 - shares % 2
    return shares, shares // 2 + 1
