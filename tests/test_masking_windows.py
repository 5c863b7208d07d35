"""The #14 masking recipe of hetero-LR (protocols.hetero_lr.kernels): exact, range-checked, and blind.

References are plain integer arithmetic written here, independent of the code under test:
``g + M`` must not wrap mod n for any honest ``g``, the window must give ``g`` back exactly, and
what the decrypting party sees must not depend on what was encrypted (also when inflated).
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from protocols.hetero_lr import kernels
from protocols.paillier import generate_keypair

BOUND = 60  # |g| < 2^60
WINDOW = BOUND + 1 + 24


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024, insecure_test_key=True)


def test_window_gives_every_honest_value_back_exactly(keys):
    pk, sk = keys
    edge = (1 << BOUND) - 1
    gs = [0, 1, -1, edge, -edge] + [secrets.randbelow(2 * edge + 1) - edge for _ in range(40)]
    masks = kernels.uniform_masks(pk, len(gs), BOUND)
    n = int(pk.n)
    assert all((1 << BOUND) <= m < n - (1 << BOUND) for m in masks)  # so g + M stays in [0, n): no wrap
    enc = pk.encrypt(gs) + kernels.encrypt_fresh(pk, [kernels.signed_plaintext(pk, m) for m in masks])
    returned = [kernels.window(pk, int(v), WINDOW) for v in sk.decrypt(enc)]
    assert all(0 <= w < 1 << WINDOW for w in returned)
    assert [kernels.unmask_window(w, m, WINDOW) for w, m in zip(returned, masks)] == gs


def test_an_inflated_value_comes_back_out_of_range_when_it_reaches_the_window(keys):
    pk, sk = keys
    g, x = 12345, 777
    (m,) = kernels.uniform_masks(pk, 1, BOUND)
    inflated = pk.encrypt([g + (x << (BOUND + 3))]) + kernels.encrypt_fresh(pk, [kernels.signed_plaintext(pk, m)])
    (v,) = sk.decrypt(inflated)
    back = kernels.unmask_window(kernels.window(pk, int(v), WINDOW), m, WINDOW)
    assert back == g + (x << (BOUND + 3)) and abs(back) >= 1 << BOUND  # the owner's range check fires


def test_what_the_decrypting_party_sees_does_not_depend_on_the_plaintext(keys):
    """Chi-square on the top 4 bits of the decryption: honest g vs g with features smuggled at 2^200."""
    pk, sk = keys
    n = int(pk.n)
    runs = 600

    def top_nibbles(plain: int) -> np.ndarray:
        masks = kernels.uniform_masks(pk, runs, BOUND)
        enc = pk.encrypt([plain] * runs) + kernels.encrypt_fresh(pk, [kernels.signed_plaintext(pk, m) for m in masks])
        vals = [int(v) % n for v in sk.decrypt(enc)]
        return np.bincount([v * 16 // n for v in vals], minlength=16)

    honest, inflated = top_nibbles(5), top_nibbles(5 + (123456789 << 200))
    for counts in (honest, inflated):
        expected = runs / 16
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 45.0, counts  # 15 d.o.f.: p < 1e-4 for a uniform distribution
    # and the bounded masks of before #14 fail this very check: the smuggled bits stand out
    old = [5 + (123456789 << 200) + secrets.randbits(BOUND + 80) for _ in range(runs)]
    assert len({v >> 200 for v in old}) == 1


def test_high_mask_hides_everything_above_the_loss_window(keys):
    pk, sk = keys
    low = 70
    t = -(1 << 50) + 99
    smuggled = 0xABCDEF << 120
    vals = []
    for _ in range(20):
        (v,) = sk.decrypt(kernels.high_mask(pk.encrypt([t + smuggled]), low))
        raw = int(v) % int(pk.n)
        assert kernels.unmask_window(raw & ((1 << low) - 1), 0, low) == t  # the honest aggregate is exact
        vals.append(raw >> 120 & 0xFFFFFF)
    assert len(set(vals)) > 15  # the bits above the window are fresh randomness each time
