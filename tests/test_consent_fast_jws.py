"""The raw-Ed25519 JWS path (fedcredit.consent.tokens) against PyJWT, an independent
implementation: the bytes signed here are the ones PyJWT writes, PyJWT accepts them, tokens
PyJWT writes verify here, and spellings RFC 7515 forbids or this profile does not use (lenient
base64, extra segments, ``crit``/``b64`` headers) is refused here, each shown to pass without the
spoiling first. Also: the per-run check's reason/issuer counts against a per-token reference."""

from __future__ import annotations

import base64
import json
from collections import Counter

import jwt
import numpy as np
import pytest

from fedcredit.consent.check import ConsentPolicy, VerifiedStore, check_tokens, jti_hash
from fedcredit.consent.demo import epoch
from fedcredit.consent.tokens import REVOCATION_TYP, TOKEN_TYP, Issuer, RevocationList, TokenRejected, verify_token
from fedcredit.data import uscc

DAY = 86_400
AT = epoch(__import__("datetime").date(2026, 6, 1))
AUD = ("bank-a", "centre")
IDS = uscc.generate(40, np.random.default_rng(7))
_NO_TIME = {"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer.generate("eid-platform")


def _tok(issuer: Issuer, sub: str, **kw) -> str:
    args = dict(
        audience=AUD,
        purpose="credit_risk_modelling",
        categories=("tax", "court"),
        not_before=AT - DAY,
        expires=AT + DAY,
        token_id=f"t-{sub}",
    )
    args.update(kw)
    return issuer.issue(sub, **args)  # type: ignore[arg-type]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_tokens_are_byte_for_byte_what_pyjwt_writes_and_pyjwt_accepts_them(issuer):
    token = _tok(issuer, IDS[0])
    claims = jwt.decode(token, issuer.public.key, algorithms=["EdDSA"], options=_NO_TIME)
    assert claims["sub"] == IDS[0] and jwt.get_unverified_header(token)["typ"] == TOKEN_TYP
    # Ed25519 is deterministic: the same claims and header through PyJWT give the same bytes.
    ref = jwt.encode(claims, issuer._key, algorithm="EdDSA", headers={"kid": issuer.name, "typ": TOKEN_TYP})
    assert ref == token
    rl = issuer.revocation_list(3, ["a", "b"], AT)
    body = jwt.decode(rl, issuer.public.key, algorithms=["EdDSA"])
    assert body["version"] == 3 and jwt.get_unverified_header(rl)["typ"] == REVOCATION_TYP


def test_a_token_pyjwt_signed_verifies_here_and_a_foreign_key_is_forged(issuer):
    claims = {
        "iss": issuer.name,
        "sub": IDS[1],
        "aud": list(AUD),
        "purpose": "credit_risk_modelling",
        "cats": ["tax"],
        "nbf": AT,
        "exp": AT + 1,
        "jti": "x",
        "iat": AT,
    }
    token = jwt.encode(claims, issuer._key, algorithm="EdDSA", headers={"kid": issuer.name, "typ": TOKEN_TYP})
    keys = {issuer.name: issuer.public}
    assert verify_token(token, keys).sub == IDS[1]
    other = Issuer.generate(issuer.name)
    forged = jwt.encode(claims, other._key, algorithm="EdDSA", headers={"kid": issuer.name, "typ": TOKEN_TYP})
    with pytest.raises(TokenRejected) as exc:
        verify_token(forged, keys)
    assert exc.value.reason == "forged"


def _spoil_sig_lenient(t: str) -> str:
    h, p, s = t.split(".")
    return f"{h}.{p}.{s[:10]}!{s[10:]}"  # Python's lenient base64 would skip the '!'


def _spoil_padding(t: str) -> str:
    return t + "=="


def _spoil_extra_segment(t: str) -> str:
    return t + ".AAAA"


def _spoil_crit_header(issuer: Issuer):
    def spoil(t: str) -> str:
        _, p, _ = t.split(".")
        head = _b64(
            json.dumps({"alg": "EdDSA", "kid": issuer.name, "typ": TOKEN_TYP, "crit": ["b64"], "b64": True}).encode()
        )
        sig = _b64(issuer._key.sign(f"{head}.{p}".encode()))  # correctly signed by the issuer itself
        return f"{head}.{p}.{sig}"

    return spoil


def test_spellings_rfc7515_forbids_are_refused_where_the_plain_token_passes(issuer):
    keys = {issuer.name: issuer.public}
    token = _tok(issuer, IDS[2])
    assert verify_token(token, keys).sub == IDS[2]  # the unspoiled token passes
    for spoil in (_spoil_sig_lenient, _spoil_padding, _spoil_extra_segment, _spoil_crit_header(issuer)):
        with pytest.raises(TokenRejected) as exc:
            verify_token(spoil(token), keys)
        assert exc.value.reason == "malformed", spoil


def test_header_cache_does_not_carry_trust_across_key_sets(issuer):
    token = _tok(issuer, IDS[3])
    assert verify_token(token, {issuer.name: issuer.public}).sub == IDS[3]  # header now cached
    with pytest.raises(TokenRejected) as exc:
        verify_token(token, {})
    assert exc.value.reason == "unknown_issuer"
    with pytest.raises(TokenRejected) as exc:
        verify_token(token, {issuer.name: Issuer.generate(issuer.name).public})
    assert exc.value.reason == "forged"


def _reference(ids, tokens, pol: ConsentPolicy) -> list[str]:
    """Per-token reference for the vectorised check, written from docs/consent.md's list."""
    out = []
    for u, t in zip(ids, tokens, strict=True):
        if not t:
            out.append("no_token")
            continue
        try:
            g = verify_token(t, pol.issuers)
        except TokenRejected as exc:
            out.append(exc.reason)
            continue
        revoked = pol.revocations.get(g.iss)
        if g.sub != u:
            out.append("wrong_subject")
        elif not set(pol.audience) <= set(g.aud):
            out.append("wrong_audience")
        elif g.purpose != pol.purpose:
            out.append("wrong_purpose")
        elif not set(pol.categories) <= set(g.cats):
            out.append("out_of_scope")
        elif g.nbf > pol.at:
            out.append("not_yet_valid")
        elif g.exp <= pol.at:
            out.append("expired")
        elif revoked is not None and g.jti in revoked.revoked:
            out.append("revoked")
        else:
            out.append("")
    return out


def test_vectorised_check_matches_a_per_token_reference(issuer, tmp_path):
    other = Issuer.generate("other-issuer")
    rng = np.random.default_rng(3)
    kinds = rng.integers(0, 10, len(IDS))
    tokens: list[str] = []
    for u, k in zip(IDS, kinds.tolist(), strict=True):
        tokens.append(
            [
                lambda u=u: _tok(issuer, u),
                lambda u=u: "",
                lambda u=u: _tok(issuer, u, purpose="loan_decision"),
                lambda u=u: _tok(issuer, u, categories=("utilities",)),
                lambda u=u: _tok(issuer, u, not_before=AT - 9 * DAY, expires=AT - DAY),
                lambda u=u: _tok(issuer, u, not_before=AT + DAY, expires=AT + 9 * DAY),
                lambda u=u: _tok(issuer, IDS[0] if u != IDS[0] else IDS[1]),
                lambda u=u: _tok(other, u),
                lambda u=u: _tok(issuer, u, token_id=f"revoked-{u}"),
                lambda u=u: _tok(issuer, u, audience=("bank-b", "centre")),
            ][k]()
        )
    keys = {issuer.name: issuer.public, other.name: other.public}
    revoked = [f"revoked-{u}" for u in IDS] + ["never-issued"]
    rls = {
        issuer.name: RevocationList.verify(issuer.revocation_list(2, revoked, AT), keys),
        other.name: RevocationList.verify(other.revocation_list(1, [], AT), keys),
    }
    pol = ConsentPolicy(keys, AUD, "credit_risk_modelling", frozenset({"tax", "court"}), AT, rls)
    want = _reference(IDS, tokens, pol)
    assert len(set(want)) >= 9  # the draw exercised most paths
    store = VerifiedStore()
    first = check_tokens(IDS, tokens, pol, store)  # verifies and files
    again = check_tokens(IDS, tokens, pol, store)  # judged from the store only
    assert again.verified_now == 0
    for res in (first, again):
        assert res.reasons.tolist() == want
        assert res.counts() == {k: v for k, v in sorted(Counter(want).items()) if k}
        assert res.accepted.tolist() == [w == "" for w in want]
    want_by: dict[str, dict[str, int]] = {}
    for w, t in zip(want, tokens, strict=True):
        try:
            name = verify_token(t, keys).iss if t else "(unknown)"
        except TokenRejected:
            name = "(unknown)"
        slot = want_by.setdefault(name, {"accepted": 0, "refused": 0})
        slot["accepted" if w == "" else "refused"] += 1
    assert again.by_issuer() == dict(sorted(want_by.items()))


def test_jti_hash_is_the_sha256_prefix():
    import hashlib

    assert jti_hash("abc") == int(hashlib.sha256(b"abc").hexdigest()[:16], 16)
