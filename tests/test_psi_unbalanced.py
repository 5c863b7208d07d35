"""Unbalanced PSI: correctness against a plaintext intersection, the unblinding algebra checked
with independent integer arithmetic, and each refusal shown by planting the attack first."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedcredit.data import uscc
from protocols.common import wire
from protocols.common.channel import public_key_of
from protocols.psi import PsiProtocolError
from protocols.psi.unbalanced import BankCache, BankRun, PreparedCentre, UbMatches, run_unbalanced_local
from protocols.psi.unbalanced.local import fetch_cache
from protocols.psi.unbalanced.scalars import (
    ORDER_CURVE,
    ORDER_TWIST,
    clamped,
    new_invertible_secret,
    twist_mask,
)

P = 2**255 - 19


def x25519(secret: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(u))


def sets(n_c: int, n_b: int, common: int, seed: int = 0) -> tuple[list[str], list[str], set[str]]:
    ids = uscc.generate(n_c + n_b - common, np.random.default_rng(seed))
    c, b = ids[:n_c], ids[n_c - common :]
    return c, b, set(c) & set(b)


def test_group_orders_are_independent_facts() -> None:
    # #E + #E' = 2p + 2 for a curve and its quadratic twist; both cofactored orders are checked
    assert 8 * ORDER_CURVE + 4 * ORDER_TWIST == 2 * P + 2
    assert pow(2, ORDER_TWIST - 1, ORDER_TWIST) == 1 and pow(3, ORDER_CURVE - 1, ORDER_CURVE) == 1


def test_unblinding_recovers_the_centre_evaluation_on_curve_and_twist() -> None:
    secret, inv_c, inv_t = new_invertible_secret()
    for inv in (inv_c, inv_t):  # clamp-stable: X25519 multiplies by exactly these scalars
        assert clamped(inv) == int.from_bytes(inv, "little")
    assert clamped(secret) * int.from_bytes(inv_c, "little") % ORDER_CURVE == 1
    assert clamped(secret) * int.from_bytes(inv_t, "little") % ORDER_TWIST == 1
    k_c = os.urandom(32)
    sides = {0: 0, 1: 0}
    for i in range(64):
        h = hashlib.sha256(b"%d" % i).digest()
        a = x25519(secret, h)
        side = twist_mask(a)[0]
        sides[side] += 1
        assert x25519(inv_t if side else inv_c, x25519(k_c, a)) == x25519(k_c, h)
        # the wrong inverse gives a different point: the side test matters
        assert x25519(inv_c if side else inv_t, x25519(k_c, a)) != x25519(k_c, h)
    assert sides[0] > 10 and sides[1] > 10


def test_twist_mask_agrees_with_euler_criterion() -> None:
    pts = b"".join(hashlib.sha256(b"t%d" % i).digest() for i in range(40))
    mask = twist_mask(pts)
    for i in range(40):
        u = (int.from_bytes(pts[32 * i : 32 * i + 32], "little") & ((1 << 255) - 1)) % P
        euler = pow((u**3 + 486662 * u**2 + u) % P, (P - 1) // 2, P)
        assert mask[i] == (1 if euler == P - 1 else 0)


def test_unbalanced_matches_plaintext_and_rows_align() -> None:
    c, b, truth = sets(3000, 400, 250, seed=3)
    b = b + ["not a uscc", b[0]]  # invalid and duplicate ids are counted, not sent
    table = PreparedCentre(c, period="2026-11")
    cache = fetch_cache(table, "bank1")
    res_c, res_b = run_unbalanced_local(table, "bank1", b, cache, session="run-1")
    assert set(res_b.ids) == truth and res_c.ids == res_b.ids
    assert [c[r] for r in res_c.rows] == res_c.ids and [b[r] for r in res_b.rows] == res_b.ids
    assert res_b.stats["rejected_invalid"] == 1 and res_b.stats["duplicates"] == 1
    # a second run of the same period reuses the table (no re-blinding) and gets a new order
    res_c2, res_b2 = run_unbalanced_local(table, "bank1", b, cache, session="run-2")
    assert set(res_b2.ids) == truth and res_c2.ids == res_b2.ids


def test_consent_filter_of_the_centre_and_per_bank_caches() -> None:
    c, b, truth = sets(500, 200, 120, seed=4)
    refused = set(sorted(truth)[:20])
    table = PreparedCentre(c, period="p")
    cache = fetch_cache(table, "bank1", allowed=lambda x: x not in refused)
    assert cache.size == 480
    _, res_b = run_unbalanced_local(table, "bank1", b, cache, session="s")
    assert set(res_b.ids) == truth - refused


def test_relay_sees_no_id_hash_nor_centre_token() -> None:
    c, b, truth = sets(300, 100, 60, seed=5)
    table = PreparedCentre(c, period="p")
    key = BankCache.new_key()
    cache_msg = wire.encode(table.cache_for("bank1", public_key_of(key)))
    cache = BankCache.open(cache_msg, key, bank="bank1", period="p")
    run = BankRun("bank1", b, cache, session="s")
    centre = table.run("bank1", "s")
    q = wire.encode(run.query())
    e = wire.encode(centre.evaluate(q))
    m = wire.encode(run.handle(e))
    centre.finish(m)
    seen = cache_msg + q + e + m

    def leaks(blob: bytes) -> bool:
        ids = any(x.encode() in blob for x in truth)
        toks = any(bytes(t) in blob for t in table._tokens[:200])  # centre tokens travel sealed only
        return ids or toks

    assert leaks(seen + next(iter(truth)).encode())  # plant an id: the search finds it
    assert leaks(seen + bytes(table._tokens[0]))  # plant a token: found too
    assert not leaks(seen)


def _fresh(n_c: int = 200, n_b: int = 50, budget: int = 10_000) -> tuple[PreparedCentre, BankRun, object]:
    c, b, _ = sets(n_c, n_b, 30, seed=6)
    table = PreparedCentre(c, period="p", query_budget=budget)
    cache = fetch_cache(table, "bank1")
    return table, BankRun("bank1", b, cache, session="s"), table.run("bank1", "s")


def test_query_budget_is_enforced_per_bank_and_period() -> None:
    table, run, centre = _fresh(budget=60)
    centre.evaluate(run.query())  # 50 ids: within budget
    cache = fetch_cache(table, "bank1")  # a new cache does not reset the budget
    run2 = BankRun("bank1", sets(200, 50, 30, seed=6)[1], cache, session="s2")
    with pytest.raises(PsiProtocolError, match="exceeds the bank's budget"):
        table.run("bank1", "s2").evaluate(run2.query())


def test_replayed_session_and_unknown_bank_are_refused() -> None:
    table, run, centre = _fresh()
    with pytest.raises(PsiProtocolError, match="already started"):
        table.run("bank1", "s")
    with pytest.raises(PsiProtocolError, match="no cache"):
        table.run("bank2", "x")


def test_tampered_evaluation_and_matches_are_refused() -> None:
    table, run, centre = _fresh()
    e = centre.evaluate(run.query())
    e.sealed = bytes([e.sealed[0] ^ 1]) + e.sealed[1:]
    with pytest.raises(PsiProtocolError, match="fail authentication"):
        run.handle(e)
    table, run, centre = _fresh()
    m = run.handle(centre.evaluate(run.query()))
    forged = UbMatches(m.protocol, m.period, m.session, m.count + 100, m.sealed)
    with pytest.raises(PsiProtocolError, match="matches for a query of"):
        centre.finish(forged)
    m.sealed = m.sealed[:-1] + bytes([m.sealed[-1] ^ 1])
    with pytest.raises(PsiProtocolError, match="fail authentication"):
        centre.finish(m)


class _ReversingBank(BankRun):
    """A dishonest bank that lists its matches in reverse token order."""

    @staticmethod
    def _agreed_order(matched: np.ndarray) -> np.ndarray:
        return np.lexsort(matched.T[::-1])[::-1]


def test_matches_out_of_agreed_order_are_refused() -> None:
    c, b, _ = sets(200, 50, 30, seed=6)
    table = PreparedCentre(c, period="p")
    cache = fetch_cache(table, "bank1")
    honest = BankRun("bank1", b, cache, session="h")
    centre = table.run("bank1", "h")
    centre.finish(honest.handle(centre.evaluate(honest.query())))  # control: accepted
    bad = _ReversingBank("bank1", b, cache, session="s")
    centre = table.run("bank1", "s")
    with pytest.raises(PsiProtocolError, match="agreed order"):
        centre.finish(bad.handle(centre.evaluate(bad.query())))


def test_low_order_point_in_query_is_refused() -> None:
    table, run, centre = _fresh()
    q = run.query()
    q.points = bytes(32) + q.points[32:]  # u = 0 is of low order
    with pytest.raises(PsiProtocolError, match="low order"):
        centre.evaluate(q)


def test_cache_for_another_bank_does_not_open() -> None:
    c, _, _ = sets(100, 10, 5)
    table = PreparedCentre(c, period="p")
    key = BankCache.new_key()
    msg = table.cache_for("bank1", public_key_of(key))
    with pytest.raises(PsiProtocolError, match="addressed to"):
        BankCache.open(msg, key, bank="bank2", period="p")
    with pytest.raises(PsiProtocolError, match="key period"):
        BankCache.open(msg, key, bank="bank1", period="q")
