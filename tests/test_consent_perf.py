"""The fast per-run consent path (issue 15: 1M firms in <= 2 s) keeps every verdict.

The per-run check reads a raw-column store (format v6, viewed in place), looks keys up once per
exchange, compares keys and subjects as raw bytes, caches revocation-list hashes and verifies
first sightings with libsodium. Each test plants its case (a revocation published after import,
an expired / wrong-purpose / other-bank token, a flipped store byte, a malleated signature...) and
checks the verdict against what the case was built to be, or against an independent reference
(numpy string equality, OpenSSL's Ed25519 through ``cryptography``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature

from fedcredit.consent import tokens as tokens_mod
from fedcredit.consent.check import (
    ConsentPolicy,
    StoreError,
    StoreJudge,
    VerifiedStore,
    check_keys,
    check_tokens,
    rows_equal,
    same_keys,
)
from fedcredit.consent.demo import epoch
from fedcredit.consent.tokens import Issuer, RevocationList, TokenRejected, verify_token
from fedcredit.data import uscc
from protocols.common.party import run_local
from protocols.consent import TokenJudge, TokenSender
from protocols.consent.messages import KEY_CHARS, token_keys

DAY = 86_400
AT = epoch(dt.date(2026, 6, 1))
AUD = ("bank", "centre")
IDS = uscc.generate(12, np.random.default_rng(15))
# What each position's token was built to be (the reference the verdicts are checked against).
CASES = [
    "",  # good
    "",
    "revoked",  # revoked by a list published *after* the token was imported
    "expired",
    "wrong_purpose",
    "wrong_audience",  # issued to another bank
    "out_of_scope",
    "not_yet_valid",
    "wrong_subject",  # another firm's token presented for this one
    "forged",
    "no_token",
    "",
]


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer.generate("eid-platform")


def _build(issuer: Issuer) -> list[bytes]:
    forger = Issuer.generate(issuer.name)
    out: list[bytes] = []
    for i, (u, case) in enumerate(zip(IDS, CASES, strict=True)):
        nbf, exp, aud, purpose, cats, sub, signer = (
            AT - DAY,
            AT + DAY,
            AUD,
            "credit_risk_modelling",
            ("tax",),
            u,
            issuer,
        )
        if case == "expired":
            nbf, exp = AT - 9 * DAY, AT - DAY
        elif case == "not_yet_valid":
            nbf, exp = AT + DAY, AT + 9 * DAY
        elif case == "wrong_purpose":
            purpose = "loan_decision"
        elif case == "wrong_audience":
            aud = ("other-bank", "centre")
        elif case == "out_of_scope":
            cats = ("utilities",)
        elif case == "wrong_subject":
            sub = IDS[0]
        elif case == "forged":
            signer = forger
        tok = b"" if case == "no_token" else signer.issue(sub, aud, purpose, cats, nbf, exp, token_id=f"t{i}").encode()
        out.append(tok)
    return out


def _policy(issuer: Issuer, revoked: tuple[str, ...] = (), version: int = 1) -> ConsentPolicy:
    keys = {issuer.name: issuer.public}
    rl = RevocationList.verify(issuer.revocation_list(version, revoked, AT - DAY), keys)
    return ConsentPolicy(keys, AUD, "credit_risk_modelling", frozenset({"tax"}), AT, {issuer.name: rl})


def _exchange(tokens: list[bytes], judge: StoreJudge) -> tuple[np.ndarray, list[str]]:
    parties = {
        "bank": TokenSender("bank", "centre", "run", tokens),
        "centre": TokenJudge("centre", "bank", "run", len(tokens), judge),
    }
    t = run_local(parties)  # type: ignore[arg-type]
    assert np.array_equal(parties["bank"].s.accepted, parties["centre"].s.accepted)
    return parties["bank"].s.accepted, [e.kind for step in t.steps for e in step]


def test_verdicts_survive_import_save_and_load_and_a_later_revocation(issuer, tmp_path):
    toks = _build(issuer)
    store = VerifiedStore()
    added, failed = store.verify_and_add([t for t in toks if t], {issuer.name: issuer.public})
    assert added == len(toks) - 2 and failed == {"forged": 1}
    key = bytes(range(32))
    loaded = VerifiedStore.load(store.save(tmp_path / "store.bin", key), key)
    assert all(np.array_equal(loaded.cols[k], store.cols[k]) for k in store.cols)
    assert loaded.tables == store.tables and loaded.rejected == store.rejected
    # before the revocation list names it, the token to be revoked passes (the reference case)
    before = StoreJudge(IDS, _policy(issuer), loaded)
    accepted, kinds = _exchange(toks, before)
    assert accepted[2] and before.result is not None and before.result.verified_now == 0
    assert "ConsentFull" in kinds  # the forged key was never filed: asked for whole, refused from cache
    # the issuer revokes token t2 after the import: the next run honours it from the same store
    judge = StoreJudge(IDS, _policy(issuer, ("t2",), version=2), loaded)
    accepted, _ = _exchange(toks, judge)
    assert judge.result is not None and judge.result.verified_now == 0
    assert judge.result.reasons.tolist() == CASES
    assert accepted.tolist() == [c == "" for c in CASES]
    # the same verdicts from scratch (every token verified now, nothing from any store)
    fresh = check_tokens(IDS, toks, _policy(issuer, ("t2",), version=2), VerifiedStore())
    assert fresh.reasons.tolist() == CASES and fresh.verified_now == len(toks) - 1


def test_a_flipped_store_byte_an_old_format_and_a_bad_header_are_each_caught(issuer, tmp_path, caplog):
    store = VerifiedStore()
    store.verify_and_add([t for t in _build(issuer) if t], {issuer.name: issuer.public})
    key = bytes(range(32))
    path = store.save(tmp_path / "store.bin", key)
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 1  # a byte in the last column
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="HMAC"):
        VerifiedStore.load(path, key)
    # an older format this node wrote (its MAC holds): discarded, so every token is verified again
    old = tmp_path / "old.npz"
    old.write_bytes(b"PK\x03\x04 an npz of format 5")
    old.with_suffix(".npz.mac").write_text(hmac.new(key, old.read_bytes(), hashlib.sha256).hexdigest())
    with caplog.at_level(logging.WARNING):
        assert len(VerifiedStore.load(old, key)) == 0
    assert "older format" in caplog.text
    # our magic but an unreadable header, MAC valid (a bug, not an attack): a clear error naming the file
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"FCSTORE\x00" + (5).to_bytes(8, "little") + b"{nope")
    bad.with_suffix(".bin.mac").write_text(hmac.new(key, bad.read_bytes(), hashlib.sha256).hexdigest())
    with pytest.raises(StoreError, match="bad.bin.*cannot be read"):
        VerifiedStore.load(bad, key)


def test_loaded_columns_are_read_only_and_growing_the_store_still_works(issuer, tmp_path):
    toks = _build(issuer)
    store = VerifiedStore()
    store.verify_and_add(toks[:4], {issuer.name: issuer.public})
    key = bytes(32)
    loaded = VerifiedStore.load(store.save(tmp_path / "s.bin", key), key)
    with pytest.raises(ValueError):
        loaded.cols["exp"][0] = 2**40  # nobody extends a verified expiry in memory
    res = check_tokens(IDS, toks, _policy(issuer, ("t2",)), loaded)  # files the rest: arrays replaced
    assert res.verified_now == len([t for t in toks[4:] if t]) and res.reasons.tolist() == CASES
    again = VerifiedStore.load(loaded.save(tmp_path / "s.bin", key), key)
    assert len(again) == len(loaded) == len(toks) - 2


def test_one_lookup_serves_both_steps_only_when_the_keys_are_the_same():
    body = bytes(np.random.default_rng(1).integers(65, 90, 4 * KEY_CHARS, dtype=np.uint8))
    a = np.frombuffer(body, dtype=f"S{KEY_CHARS}")
    assert same_keys(a, np.frombuffer(body, dtype=f"S{KEY_CHARS}"))  # one immutable buffer: free
    other = bytearray(body)
    b = np.frombuffer(other, dtype=f"S{KEY_CHARS}")
    assert same_keys(a, b)  # a writable copy, equal: compared
    other[5] ^= 1  # planted: one key changed between the steps
    assert not same_keys(a, b)
    assert not same_keys(a, a[:3])


def test_raw_byte_equality_matches_numpy_string_equality():
    rng = np.random.default_rng(3)
    col = rng.integers(0, 256, (500, KEY_CHARS), dtype=np.uint8)
    col[:50, -3:] = 0  # values ending in zero bytes (numpy strips them from "S" values)
    col[50] = 0  # the empty value
    col = col.view(f"S{KEY_CHARS}").ravel()
    idx = rng.integers(0, col.size, 2000)
    want = col[rng.integers(0, col.size, 2000)].copy()
    want[::7] = col[idx[::7]]  # some equal on purpose
    assert np.array_equal(rows_equal(col, idx, want), col[idx] == want)
    assert rows_equal(col, idx, want).sum() >= 2000 // 7


def test_token_keys_fast_path_matches_zero_padded_tails():
    rng = np.random.default_rng(4)
    full = [bytes(rng.integers(65, 90, int(n), dtype=np.uint8)) for n in rng.integers(90, 600, 50)]
    mixed = [*full[:10], b"", b"short", full[10][:KEY_CHARS], *full[11:]]
    for tokens in (full, mixed, []):
        reference = b"".join(t[-KEY_CHARS:].ljust(KEY_CHARS, b"\0") for t in tokens)
        assert token_keys(tokens) == reference


def _malleate(sig: bytes) -> bytes:
    """The same signature with S + L (the group order): non-canonical, must be refused."""
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    return sig[:32] + s.to_bytes(32, "little")


def test_libsodium_verification_agrees_with_openssl_and_refuses_malleated_signatures(issuer):
    assert tokens_mod.ED25519_BACKEND == "libsodium"  # pynacl is a dependency
    keys = {issuer.name: issuer.public}
    rng = np.random.default_rng(6)
    for i, u in enumerate(IDS[:8]):
        tok = issuer.issue(u, AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY, token_id=f"x{i}").encode()
        head, body, seg = tok.split(b".")
        sig = base64.urlsafe_b64decode(seg + b"==")
        msg = head + b"." + body
        flipped = bytearray(sig)
        flipped[int(rng.integers(0, 64))] ^= 1 << int(rng.integers(0, 8))
        other_msg = msg[:-1] + (b"A" if msg[-1:] != b"A" else b"B")
        for s, m in ((sig, msg), (bytes(flipped), msg), (sig, other_msg), (_malleate(sig), msg)):
            try:
                issuer.public.key.verify(s, m)  # the reference: OpenSSL through cryptography
                openssl = True
            except InvalidSignature:
                openssl = False
            assert issuer.public.verifies(s, m) is openssl
        assert not issuer.public.verifies(_malleate(sig), msg)
        forged = msg + b"." + base64.urlsafe_b64encode(_malleate(sig)).rstrip(b"=")
        with pytest.raises(TokenRejected) as e:
            verify_token(forged, keys)
        assert e.value.reason == "forged"
        # both backends sign identically (deterministic RFC 8032): cached demo tokens stay valid
        assert issuer.sign_raw(msg) == issuer._key.sign(msg) == sig


def test_the_cryptography_fallback_gives_the_same_verdicts(issuer, monkeypatch):
    toks = _build(issuer)
    with_sodium = check_tokens(IDS, toks, _policy(issuer, ("t2",)), VerifiedStore())
    monkeypatch.setattr(tokens_mod, "ED25519_BACKEND", "cryptography")
    without = check_tokens(IDS, toks, _policy(issuer, ("t2",)), VerifiedStore())
    assert without.reasons.tolist() == with_sodium.reasons.tolist() == CASES


def test_check_keys_reuses_rows_only_for_the_same_store_lookup(issuer):
    """A stale ``rows`` (another key array's lookup) must not be used: check_keys recomputes when
    the shape differs, and StoreJudge passes rows only for the same keys."""
    toks = _build(issuer)
    store = VerifiedStore()
    store.verify_and_add([t for t in toks if t], {issuer.name: issuer.public})
    keys = np.frombuffer(token_keys(toks), dtype=f"S{KEY_CHARS}")
    judge = StoreJudge(IDS, _policy(issuer, ("t2",)), store)
    asked = judge.unknown(keys)
    assert asked.tolist() == [9]  # the forged token, never filed
    swapped = keys.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # planted: the keys change between unknown() and decide()
    accepted = judge.decide(swapped, asked, toks[9])
    assert judge.result is not None and judge.result.reasons.tolist()[1] == "wrong_subject"
    assert not accepted[1]
    direct = check_keys(IDS, swapped, asked, toks[9], _policy(issuer, ("t2",)), store, np.zeros(3, np.int64))
    assert direct.reasons.tolist() == judge.result.reasons.tolist()


def test_a_subject_longer_than_a_uscc_is_not_cut_down_to_one(issuer):
    """Planted: a (trusted-issuer) token whose ``sub`` is a USCC plus junk. A fixed-width
    subject column would truncate it to the USCC and accept it for that firm; it must be
    ``wrong_subject``, on first sight and from the store."""
    claims = {
        "iss": issuer.name, "sub": IDS[0] + "X", "aud": list(AUD), "purpose": "credit_risk_modelling",
        "cats": ["tax"], "nbf": AT - DAY, "exp": AT + DAY, "iat": AT - DAY, "jti": "long-sub",
    }  # fmt: skip
    tok = issuer._sign(claims, tokens_mod.TOKEN_TYP).encode()
    good = issuer.issue(IDS[1], AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY, token_id="ok").encode()
    store = VerifiedStore()
    for _ in range(2):  # first sight, then from the store
        res = check_tokens(IDS[:2], [tok, good], _policy(issuer), store)
        assert res.reasons.tolist() == ["wrong_subject", ""]
    assert sorted(store.cols["sub"].tolist()) == sorted([b"", IDS[1].encode()])


def test_the_unverified_subject_is_what_pyjwt_reads_and_none_for_junk(issuer):
    import jwt

    tok = issuer.issue(IDS[0], AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY)
    assert tokens_mod.unverified_subject(tok) == jwt.decode(tok, options={"verify_signature": False})["sub"]
    head, body, sig = tok.split(".")
    lst, num_sub = (base64.urlsafe_b64encode(r).rstrip(b"=").decode() for r in (b"[1]", b'{"sub": 5}'))
    for junk in (
        "not-a-token", f"{head}.{body}", f"{head}.{body}.{sig}.x", f"{head}.{body}=.{sig}", f"{head}.%%%.{sig}",
        f"{lst}.{body}.{sig}", f"{head}.{lst}.{sig}", f"{head}.{num_sub}.{sig}", "ü.ü.ü",
    ):  # fmt: skip
        assert tokens_mod.unverified_subject(junk) is None, junk


def test_the_bank_reads_its_token_file_once_per_version(issuer, tmp_path):
    from parties.vertical.consent import _token_file

    a = issuer.issue(IDS[0], AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY, token_id="a")
    b = issuer.issue(IDS[0], AUD, "loan_decision", ("tax", "court"), AT - DAY, AT + DAY, token_id="b")
    path = tmp_path / "tokens.txt"
    path.write_text(a + "\n")
    first = _token_file(path)
    assert first == {IDS[0]: a} and _token_file(path) is first  # the same step again: not re-read
    path.write_text(b + "\n")  # planted: the bank's file changes between runs
    assert _token_file(path) == {IDS[0]: b}


def test_store_key_created_by_two_runs_at_once_is_one_key(tmp_path):
    """Two runs of one centre start together on a fresh node (CentreHost): both must get the same,
    complete key (a plain O_EXCL create made the second run fail with FileExistsError)."""
    import threading

    from fedcredit.consent.check import store_key

    path = tmp_path / "store-centre.bin.key"
    barrier, got, errors = threading.Barrier(8), [], []

    def one() -> None:
        barrier.wait()
        try:
            got.append(store_key(path))
        except Exception as exc:  # noqa: BLE001 - the failure this test is about
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8 and len(set(got)) == 1 and len(got[0]) == 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
