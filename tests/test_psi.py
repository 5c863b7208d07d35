"""ECDH-PSI: correctness, commutativity, what the relay sees, bad input and protocol errors."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedcredit.data import uscc
from protocols.common import wire
from protocols.psi import (
    InvalidIdError,
    PsiBlinded,
    PsiParty,
    PsiProtocolError,
    PsiReblinded,
    run_local,
    session_salt,
    uscc_error,
    uscc_mask,
)
from protocols.psi.kernels import hash_and_blind, hash_id, reblind


def x25519(secret: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(u))


def sets(n_a: int, n_b: int, common: int, seed: int = 0) -> tuple[list[str], list[str], set[str]]:
    ids = uscc.generate(n_a + n_b - common, np.random.default_rng(seed))
    a, b = ids[:n_a], ids[n_a - common :]
    return a, b, set(a) & set(b)


def assert_aligned(a: list, b: list, res_a, res_b, truth: set[str]) -> None:
    assert set(res_a.ids) == truth
    assert res_a.ids == res_b.ids  # same agreed order: rows align for vertical training
    assert res_a.size == res_b.size == len(truth)
    assert [uscc.normalise(a[r]) for r in res_a.rows] == res_a.ids
    assert [uscc.normalise(b[r]) for r in res_b.rows] == res_b.ids
    assert res_a.rows.dtype == np.int64


# ------------------------------------------------------------------------- commutativity


def test_x25519_exponentiations_commute_including_clamping() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.bytes(32), rng.bytes(32)  # raw, unclamped secrets
        u = rng.bytes(32)  # random u-coordinates: about half lie on the twist
        assert x25519(b, x25519(a, u)) == x25519(a, x25519(b, u))
    # clamping is applied by X25519 itself: flipping clamped bits changes nothing
    a = bytearray(rng.bytes(32))
    u = hash_id(b"913301000000000001", session_salt("t"))
    flipped = bytearray(a)
    flipped[0] ^= 0x07  # the three low bits are cleared by clamping
    flipped[31] ^= 0x80  # the top bit is cleared
    assert x25519(bytes(a), u) == x25519(bytes(flipped), u)


def test_kernels_commute_in_either_order() -> None:
    ids = np.array(uscc.generate(20, np.random.default_rng(2)), dtype="S18")
    ka, kb, salt = os.urandom(32), os.urandom(32), session_salt("s")
    ab = reblind((kb, hash_and_blind((ka, salt, ids)), 32))
    ba = reblind((ka, hash_and_blind((kb, salt, ids)), 32))
    assert ab == ba and len(ab) == 32 * 20
    assert reblind((kb, hash_and_blind((ka, salt, ids)), 12)) == b"".join(ab[i : i + 12] for i in range(0, len(ab), 32))


# ----------------------------------------------------------------------------- USCC check


def test_uscc_check_agrees_with_fedcredit() -> None:
    rng = np.random.default_rng(3)
    good = uscc.generate(300, rng)
    codes = (
        good
        + [uscc.corrupt_check_character(c) for c in good[:100]]
        + [c.lower() for c in good[:20]]
        + [" " + c + "\t" for c in good[:20]]
        + [c[:17] for c in good[:20]]
        + [c + "0" for c in good[:20]]
        + ["".join(rng.choice(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), 18)) for _ in range(200)]
        + ["Z" + c[1:] for c in good[:10]]
        + [c[:3] + "A" + c[4:] for c in good[:10]]
        + ["91330100MA2CF1234\u00e9", ""]
    )
    norm = [uscc.normalise(c) for c in codes]
    mask = uscc_mask(norm)
    assert mask.tolist() == [uscc.is_valid(c) for c in codes]
    assert [uscc_error(c) for c in norm] == [uscc.validation_error(c) for c in codes]
    assert mask[:300].all() and not mask[300:400].any()


# ------------------------------------------------------------------------------ correctness


@pytest.mark.parametrize("n_a,n_b,common", [(400, 300, 0), (400, 400, 200), (300, 300, 300), (500, 50, 50), (1, 1, 1)])
def test_random_sets(n_a: int, n_b: int, common: int) -> None:
    a, b, truth = sets(n_a, n_b, common, seed=n_a + common)
    rng = np.random.default_rng(common)
    rng.shuffle(a)
    rng.shuffle(b)
    res_a, res_b = run_local(a, b, workers=1)
    assert_aligned(a, b, res_a, res_b, truth)
    assert res_a.stats == {
        "input": n_a,
        "rejected_invalid": 0,
        "duplicates": 0,
        "refused": 0,
        "used": n_a,
        "peer_used": n_b,
        "intersection": common,
    }


def test_worker_pool_and_full_length_keys() -> None:
    a, b, truth = sets(300, 300, 120, seed=5)
    res_a, res_b = run_local(a, b, workers=2, chunk_size=64, truncate=32)
    assert_aligned(a, b, res_a, res_b, truth)


def test_duplicates_counted_and_first_row_kept() -> None:
    a, b, truth = sets(100, 100, 40, seed=6)
    common = sorted(truth)
    a2 = a + [common[0], common[0].lower(), " " + common[1]]  # duplicates after normalising
    b2 = [b[0]] + b
    res_a, res_b = run_local(a2, b2, workers=1)
    assert_aligned(a2, b2, res_a, res_b, truth)
    assert res_a.stats["duplicates"] == 3 and res_b.stats["duplicates"] == 1
    assert res_a.duplicate_rows.tolist() == [100, 101, 102]
    assert res_b.duplicate_rows.tolist() == [1]
    assert res_a.rows.max() < 100  # first occurrence wins
    assert res_a.stats["used"] == 100 and res_b.stats["used"] == 100


def test_invalid_ids_rejected_and_counted() -> None:
    a, b, truth = sets(100, 100, 30, seed=7)
    bad = [uscc.corrupt_check_character(a[0]), "NOT-A-USCC", None, 12345, ""]
    a2 = a + bad
    res_a, res_b = run_local(a2, b, workers=1)
    assert_aligned(a2, b, res_a, res_b, truth)
    assert res_a.stats["rejected_invalid"] == 5
    assert res_a.invalid_rows.tolist() == [100, 101, 102, 103, 104]
    assert res_a.stats["used"] == 100
    with pytest.raises(InvalidIdError, match=r"party A: row 100: .*check character"):
        PsiParty("A", a2, strict=True)


def test_custom_validator() -> None:
    a = ["alice", "bob", "carol", "x", "dave"]
    b = ["BOB", "dave", "eve"]
    res_a, res_b = run_local(a, b, validator=lambda s: len(s) > 1, workers=1)
    assert res_a.ids == res_b.ids and set(res_a.ids) == {"BOB", "DAVE"}
    assert res_a.stats["rejected_invalid"] == 1
    assert sorted(res_a.rows.tolist()) == [1, 4]


@pytest.mark.parametrize("n_a,n_b", [(0, 50), (50, 0), (0, 0)])
def test_empty_sets(n_a: int, n_b: int) -> None:
    a, b, _ = sets(n_a, n_b, 0, seed=8)
    res_a, res_b = run_local(a, b, workers=1)
    assert res_a.size == res_b.size == 0 and res_a.ids == [] and res_b.rows.size == 0


def test_all_invalid_is_an_empty_set() -> None:
    res_a, res_b = run_local(["bad", "worse"], uscc.generate(5, np.random.default_rng(0)), workers=1)
    assert res_a.size == 0 and res_a.stats["rejected_invalid"] == 2
    assert res_b.stats["peer_used"] == 0


def test_consent_filter_counts_refused() -> None:
    a, b, truth = sets(200, 200, 100, seed=9)
    allowed = set(b[:150])  # consent for 150 of the bank's firms
    res_a, res_b = run_local(a, b, allowed_b=allowed, workers=1)
    assert_aligned(a, b, res_a, res_b, truth & allowed)
    assert res_b.stats["refused"] == 50 and res_b.stats["used"] == 150
    assert res_a.stats["refused"] == 0 and res_a.stats["peer_used"] == 150
    pred_a, _ = run_local(a, b, allowed_a=lambda s: s.endswith(("1", "3", "5")), workers=1)
    kept = {x for x in a if x.endswith(("1", "3", "5"))}
    assert set(pred_a.ids) == truth & kept
    assert pred_a.stats["refused"] == 200 - len(kept)


def test_fresh_secrets_and_shuffle_per_run() -> None:
    ids = uscc.generate(50, np.random.default_rng(10))
    p1, p2 = PsiParty("A", ids, session="s"), PsiParty("A", ids, session="s")
    m1, m2 = p1.start(), p2.start()
    chunks1 = {m1.points[i : i + 32] for i in range(0, len(m1.points), 32)}
    chunks2 = {m2.points[i : i + 32] for i in range(0, len(m2.points), 32)}
    assert not chunks1 & chunks2 and m1.channel_key != m2.channel_key
    # order is not the input order: the points are not H(id)^k in input order
    pts = [m1.points[i : i + 32] for i in range(0, len(m1.points), 32)]
    hashed = hash_and_blind((p1._secret, session_salt("s"), np.array(ids, dtype="S18")))
    assert pts != [hashed[i : i + 32] for i in range(0, len(hashed), 32)]
    assert sorted(pts) == sorted(hashed[i : i + 32] for i in range(0, len(hashed), 32))


# ----------------------------------------------------------------------- relay's view


def test_relay_sees_no_plaintext_nor_unblinded_hash_nor_matches() -> None:
    a, b, truth = sets(150, 150, 150, seed=11)  # full overlap: worst case for matching
    transcript: list[tuple[str, str, bytes]] = []
    res_a, _ = run_local(a, b, session="run-42", workers=1, transcript=transcript)
    assert res_a.size == 150
    assert [(s, t) for s, t, _ in transcript].count(("A", "PsiBlinded")) == 1
    assert len(transcript) == 4
    blob = b"".join(d for _, _, d in transcript)
    salt = session_salt("run-42")
    for x in a + b:
        h = hash_id(x.encode(), salt)
        for needle in (
            x.encode(),
            x.encode("utf-16-le"),
            x.lower().encode(),
            x[:-1].encode(),
            h,
            h[:12],
            h[-12:],
            h.hex().encode(),
        ):
            assert needle not in blob, needle
    msgs = {(s, t): d for s, t, d in transcript}
    r1a = wire.decode(msgs[("A", "PsiBlinded")], PsiBlinded)
    r1b = wire.decode(msgs[("B", "PsiBlinded")], PsiBlinded)
    pa = {r1a.points[i : i + 32] for i in range(0, len(r1a.points), 32)}
    pb = {r1b.points[i : i + 32] for i in range(0, len(r1b.points), 32)}
    assert not pa & pb  # same ids, different blinding: round 1 is unlinkable
    r2a = wire.decode(msgs[("A", "PsiReblinded")], PsiReblinded).sealed
    r2b = wire.decode(msgs[("B", "PsiReblinded")], PsiReblinded).sealed
    ka = {r2a[i : i + 12] for i in range(0, len(r2a) - 16, 12)}
    kb = {r2b[i : i + 12] for i in range(0, len(r2b) - 16, 12)}
    assert not ka & kb  # sealed: the relay cannot even count the intersection


# ----------------------------------------------------------------------- protocol errors


def _started_pair(n: int = 20) -> tuple[PsiParty, PsiParty, PsiBlinded, PsiBlinded]:
    a, b, _ = sets(n, n, n // 2, seed=12)
    pa, pb = PsiParty("A", a, session="e"), PsiParty("B", b, session="e")
    return pa, pb, pa.start(), pb.start()


def test_wrong_step_messages() -> None:
    pa, pb, m1a, m1b = _started_pair()
    m2b = pb.handle(m1a)
    with pytest.raises(
        PsiProtocolError,
        match=r"party A, step 1.*expected PsiBlinded.*"
        r"PsiReblinded",
    ):
        pa.handle(m2b)
    with pytest.raises(
        PsiProtocolError,
        match=r"party A, step 1.*expected a PsiBlinded "
        r"message, got PsiReblinded",
    ):
        pa.handle(wire.encode(m2b))
    with pytest.raises(PsiProtocolError, match="before start"):
        PsiParty("A", []).handle(m1b)
    with pytest.raises(PsiProtocolError, match="called twice"):
        pa.start()
    with pytest.raises(PsiProtocolError, match="no result yet"):
        pa.result()
    m2a = pa.handle(m1b)
    with pytest.raises(PsiProtocolError, match=r"party B, step 2.*expected PsiReblinded"):
        pb.handle(m1a)
    pa.handle(m2b)
    pb.handle(wire.encode(m2a))
    assert pa.result().ids == pb.result().ids
    with pytest.raises(PsiProtocolError, match="after the protocol finished"):
        pa.handle(m2b)
    with pytest.raises(PsiProtocolError, match="undecodable bytes after"):
        pa.handle(b"garbage")


def test_wrong_sender_session_truncate_and_garbage() -> None:
    pa, _, m1a, m1b = _started_pair()
    q = PsiParty("A", [], session="e")
    q.start()
    with pytest.raises(PsiProtocolError, match=r"party A, step 1 \(.*\): message from 'A'"):
        q.handle(m1a)
    other = PsiParty("A", [], session="other-run")
    other.start()
    with pytest.raises(PsiProtocolError, match="session differs"):
        other.handle(m1b)
    t16 = PsiParty("A", [], session="e", truncate=16)
    t16.start()
    with pytest.raises(PsiProtocolError, match="truncates keys to 12 bytes"):
        t16.handle(m1b)
    with pytest.raises(PsiProtocolError, match="step 1.*field points is str, expected bytes"):
        pa.handle(wire.encode(dataclasses.replace(m1b, points="x" * len(m1b.points))))
    with pytest.raises(PsiProtocolError, match="step 1.*field count is bool"):
        pa.handle(dataclasses.replace(m1b, count=True))
    with pytest.raises(PsiProtocolError, match="step 1.*bad magic"):
        pa.handle(b"garbage")
    with pytest.raises(ValueError, match="truncate"):
        PsiParty("A", [], truncate=4)


def test_wrong_lengths() -> None:
    pa, pb, m1a, m1b = _started_pair()
    for bad in (
        dataclasses.replace(m1b, points=m1b.points[:-1]),  # not a multiple of 32
        dataclasses.replace(m1b, count=m1b.count + 1),  # count disagrees
        dataclasses.replace(m1b, points=m1b.points + bytes(32)),
    ):
        with pytest.raises(PsiProtocolError, match=r"party A, step 1.*is not count"):
            pa.handle(wire.encode(bad))
    with pytest.raises(PsiProtocolError, match=r"step 1.*low-order"):
        pa.handle(dataclasses.replace(m1b, points=bytes(32) + m1b.points[32:]))
    with pytest.raises(PsiProtocolError, match=r"step 1.*channel key"):
        pa.handle(dataclasses.replace(m1b, channel_key=b"short"))
    assert pa.state == "sent_blinded"  # a refused message leaves the state unchanged
    m2a, m2b = pa.handle(m1b), pb.handle(m1a)
    with pytest.raises(
        PsiProtocolError,
        match=r"party A, step 2 \(re-blinded keys\): count 19, "
        r"but this party sent 20",
    ):
        pa.handle(dataclasses.replace(m2b, count=19))
    with pytest.raises(PsiProtocolError, match=r"step 2 \(re-blinded keys\): sealed payload"):
        pa.handle(dataclasses.replace(m2b, sealed=m2b.sealed[:-12]))
    tampered = bytearray(m2b.sealed)
    tampered[0] ^= 1
    with pytest.raises(PsiProtocolError, match=r"step 2 \(re-blinded keys\): sealed keys fail"):
        pa.handle(dataclasses.replace(m2b, sealed=bytes(tampered)))
    with pytest.raises(PsiProtocolError, match=r"step 2 \(re-blinded keys\): sealed keys fail"):
        pa.handle(dataclasses.replace(m2a, sender="B"))  # A's own keys replayed as B's
    pa.handle(m2b)
    assert pa.result().size == 10


def test_error_in_one_party_does_not_hang_run_local() -> None:
    with pytest.raises(InvalidIdError):
        run_local(
            ["bad"], ["worse"], workers=1, validator=lambda s: (_ for _ in ()).throw(InvalidIdError("validator failed"))
        )


def test_benchmark_script_checks_against_plaintext(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "simulations" / "bench" / "psi.py"
    spec = importlib.util.spec_from_file_location("bench_psi", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--size", "300", "--overlap", "0.3", "--workers", "1", "--no-openmined"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["correct"] is True and out["size"] == 300 and out["intersection"] == 90
    assert out["seconds"] > 0 and out["items_per_s"] > 0


def test_matching_handles_keys_sharing_their_first_8_bytes() -> None:
    from protocols.psi.matching import common_in_key_order, key_columns

    rng = np.random.default_rng(13)
    own = rng.integers(0, 256, (200, 12), dtype=np.uint8)
    own[10:20, :8] = own[0, :8]  # ten keys share their first 8 bytes, differ after
    peer = rng.integers(0, 256, (150, 12), dtype=np.uint8)
    peer[:5] = own[[12, 3, 15, 77, 0]]
    peer[5:9, :8] = own[0, :8]  # near-misses: same first 8 bytes, not in own
    got = common_in_key_order(key_columns(own), key_columns(peer))
    assert sorted(got.tolist()) == [0, 3, 12, 15, 77]
    assert [bytes(own[i]) for i in got] == sorted(bytes(own[i]) for i in got)
