"""The transparency log: RFC 9162 roots (against an independent reference), witnesses that refuse
forks and missing records, and a verifier that catches every single-record mutation."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.ledger.transparency import (
    SignedTreeHead,
    TransparencyError,
    TransparencyLog,
    Witness,
    verify_log,
)

COORD = Ed25519PrivateKey.generate()
PARTIES = {"bank": Ed25519PrivateKey.generate(), "centre": Ed25519PrivateKey.generate()}
PUBS = {n: k.public_key() for n, k in PARTIES.items()}


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written from the RFC (independent of pymerkle)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def rec(i: int) -> bytes:
    return f'{{"seq":{i},"kind":"step","payload_sha256":"{hashlib.sha256(str(i).encode()).hexdigest()}"}}'.encode()


def test_roots_follow_rfc_9162():
    log = TransparencyLog("run")
    assert log.root() == mth([])
    for i in range(33):
        log.append(rec(i))
        assert log.root() == mth([rec(j) for j in range(i + 1)])


def run_with_heads(n: int, boundaries: list[int]):
    """A log of ``n`` records with heads at ``boundaries`` (and n), each checked and co-signed."""
    log = TransparencyLog("run-1")
    witnesses = {p: Witness(p, k, COORD.public_key()) for p, k in PARTIES.items()}
    heads, cosigs = [], []
    sizes = sorted({b for b in boundaries if 0 < b < n} | {n})
    for size in sizes:
        while len(log) < size:
            log.append(rec(len(log)))
        head = log.head(COORD, f"t{size}")
        heads.append(head)
        for w in witnesses.values():
            last = w.heads[-1].size if w.heads else 0
            cons = log.prove_consistency(last, size) if 0 < last < size else None
            own = {i: (log.records[i], log.prove_inclusion(i, size)) for i in range(last, size, 3)}
            cosigs.append(w.cosign(head, cons, own))
    return log, heads, cosigs, witnesses


def test_untouched_log_verifies_and_witnesses_refuse_forks_and_missing_records():
    log, heads, cosigs, witnesses = run_with_heads(20, [5, 12])
    v = verify_log(log.records, heads, cosigs, COORD.public_key(), PUBS)
    assert v.ok and v.heads_checked == 3, v.errors
    # a fork: another log whose record 3 differs, signed by the coordinator, extended to 25
    forked = TransparencyLog("run-1", [rec(i) if i != 3 else b"rewritten" for i in range(25)])
    fork_head = forked.head(COORD, "t25")
    with pytest.raises(TransparencyError, match="not consistent"):
        witnesses["bank"].cosign(fork_head, forked.prove_consistency(20, 25))
    # a head that leaves out the bank's own record
    honest = TransparencyLog("run-1", log.records + [rec(20), rec(21)])
    head = honest.head(COORD, "t22")
    bogus = honest.prove_inclusion(5, 22)
    with pytest.raises(TransparencyError, match="own record 21"):
        witnesses["bank"].cosign(head, honest.prove_consistency(20, 22), {21: (b"bank egress 21", bogus)})
    # a head the coordinator did not sign
    forged = SignedTreeHead(head.log_id, head.size, head.root, head.timestamp, "00" * 64)
    with pytest.raises(TransparencyError, match="signature"):
        witnesses["centre"].cosign(forged, None)


def test_missing_or_forged_cosignature_fails_verification():
    log, heads, cosigs, _ = run_with_heads(10, [4])
    v = verify_log(log.records, heads, [c for c in cosigs if c.party != "centre"], COORD.public_key(), PUBS)
    assert not v.ok and "no valid co-signature from centre" in v.errors[0]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(4, 40),
    cuts=st.lists(st.integers(1, 39), max_size=4),
    kind=st.sampled_from(["remove", "alter", "swap", "insert", "truncate", "move"]),
    data=st.data(),
)
def test_every_single_record_mutation_under_a_cosigned_head_is_detected(n, cuts, kind, data):
    log, heads, cosigs, _ = run_with_heads(n, cuts)
    covered = heads[-1].size  # every record up to the last co-signed head
    recs = list(log.records)
    i = data.draw(st.integers(0, covered - 1), label="record")
    if kind == "remove":
        del recs[i]
    elif kind == "alter":
        recs[i] = recs[i].replace(b'"step"', b'"stop"')
    elif kind == "swap":
        j = data.draw(st.integers(0, covered - 1).filter(lambda j: j != i), label="other")
        recs[i], recs[j] = recs[j], recs[i]
    elif kind == "insert":
        recs.insert(i, b'{"kind":"injected"}')
    elif kind == "truncate":
        recs = recs[:i]
    else:  # move record i to the end (the last record: to the front)
        r = recs.pop(i)
        recs.insert(0 if i == len(recs) else len(recs), r)
    v = verify_log(recs, heads, cosigs, COORD.public_key(), PUBS)
    assert not v.ok, (kind, i)
    assert any(("truncated" in e) or ("does not match" in e) for e in v.errors)
