"""Consent tokens: each refusal reason is caught, the store never vouches for bytes it did not
verify, the sealed exchange works, and a run without tokens outside demo mode does not start."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from fedcredit import config
from fedcredit.consent.check import ConsentPolicy, StoreError, StoreJudge, VerifiedStore, check_tokens
from fedcredit.consent.demo import DemoShares, demo_material, epoch
from fedcredit.consent.tokens import Issuer, IssuerKey, RevocationList, TokenError, TokenRejected, verify_token
from fedcredit.data import uscc
from protocols.common.party import run_local
from protocols.consent import ConsentProtocolError, TokenJudge, TokenSender

DAY = 86_400
AT = epoch(__import__("datetime").date(2026, 6, 1))
IDS = uscc.generate(12, np.random.default_rng(1))
AUD = ("bank-a", "centre")
CATS = ("court", "tax")


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer.generate("eid-platform")


def policy(issuer: Issuer, rl: RevocationList | None = None, **kw) -> ConsentPolicy:
    args = dict(
        issuers={issuer.name: issuer.public},
        audience=AUD,
        purpose="credit_risk_modelling",
        categories=frozenset(CATS),
        at=AT,
        revocations={rl.iss: rl} if rl else {},
    )
    args.update(kw)
    return ConsentPolicy(**args)  # type: ignore[arg-type]


def good(issuer: Issuer, sub: str, **kw) -> str:
    args = dict(
        audience=AUD, purpose="credit_risk_modelling", categories=CATS, not_before=AT - 10 * DAY, expires=AT + 10 * DAY
    )
    args.update(kw)
    return issuer.issue(sub, **args)  # type: ignore[arg-type]


def _alter_claim(token: str, **changes) -> str:
    """Same header and signature, altered claims: a forgery without the issuer's key."""
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(changes)
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{h}.{p2}.{s}"


def test_each_refusal_reason_excludes_exactly_that_firm(issuer):
    other = Issuer.generate("eid-platform")  # same name, another key: a forger
    stranger = Issuer.generate("somebody-else")
    t = [good(issuer, u) for u in IDS]
    t[0] = _alter_claim(t[0], cats=["court", "tax", "utilities"])  # forged: claims altered
    t[1] = good(other, IDS[1])  # forged: signed with another key under the issuer's name
    t[2] = good(issuer, IDS[2], expires=AT - DAY, not_before=AT - 30 * DAY)  # expired
    t[3] = good(issuer, IDS[3], token_id="revoke-me")  # revoked
    t[4] = good(issuer, IDS[4], purpose="loan_decision")  # other purpose
    t[5] = good(issuer, IDS[5], categories=("tax",))  # lacks the court category the run needs
    t[6] = good(issuer, IDS[6], audience=("bank-b", "centre"))  # for another bank
    t[7] = good(issuer, IDS[0])  # a valid token, but for another firm
    t[8] = good(stranger, IDS[8])  # an issuer the centre does not trust
    t[9] = good(issuer, IDS[9], not_before=AT + DAY)  # not yet valid
    t[10] = ""  # the bank holds none
    rl = RevocationList.verify(issuer.revocation_list(3, ["revoke-me"], AT - DAY), {issuer.name: issuer.public})
    res = check_tokens(IDS, t, policy(issuer, rl), VerifiedStore())
    expected = [
        "forged",
        "forged",
        "expired",
        "revoked",
        "wrong_purpose",
        "out_of_scope",
        "wrong_audience",
        "wrong_subject",
        "unknown_issuer",
        "not_yet_valid",
        "no_token",
        "",
    ]
    assert res.reasons.tolist() == expected
    assert res.accepted.tolist() == [False] * 11 + [True]
    payload = res.ledger_payload()
    assert payload["refused"]["forged"] == 2 and payload["accepted"] == 1
    assert payload["revocation_lists"] == {"eid-platform": 3}
    assert not any(u in json.dumps(payload) for u in IDS)  # counts, never ids


def test_without_the_revocation_list_the_revoked_token_would_pass(issuer):
    """The reference for the revocation check: the same token passes when no list names it."""
    t = good(issuer, IDS[3], token_id="revoke-me")
    assert check_tokens(IDS[3:4], [t], policy(issuer), VerifiedStore()).accepted.tolist() == [True]


def test_the_store_verifies_once_and_never_vouches_for_altered_bytes(issuer, tmp_path):
    tokens = [good(issuer, u) for u in IDS]
    store = VerifiedStore()
    first = check_tokens(IDS, tokens, policy(issuer), store)
    assert first.verified_now == len(IDS) and first.accepted.all()
    again = check_tokens(IDS, tokens, policy(issuer), store)
    assert again.verified_now == 0 and again.accepted.all()
    # a verified token presented with altered claims is judged on the claims it was verified with
    altered = list(tokens)
    altered[2] = _alter_claim(tokens[2], purpose="loan_decision", exp=AT - DAY)
    res = check_tokens(IDS, altered, policy(issuer), store)
    assert res.accepted[2] and res.verified_now == 0
    altered[5] = _alter_claim(tokens[2], sub=IDS[5])  # firm 2's signature passed off as firm 5's
    assert check_tokens(IDS, altered, policy(issuer), store).reasons[5] == "wrong_subject"
    # a new signature is verified: a forgery fails
    forged = list(tokens)
    forged[2] = _alter_claim(good(issuer, IDS[2], token_id="x"), exp=AT + 999 * DAY)
    assert check_tokens(IDS, forged, policy(issuer), store).reasons[2] == "forged"
    # an altered copy seen first cannot get the genuine token refused later
    fresh = good(issuer, IDS[2], token_id="y")
    poisoned = list(tokens)
    poisoned[2] = _alter_claim(fresh, purpose="loan_decision")
    assert check_tokens(IDS, poisoned, policy(issuer), store).reasons[2] == "forged"
    poisoned[2] = fresh
    assert check_tokens(IDS, poisoned, policy(issuer), store).accepted[2]
    # a refusal is cached too (no second verification), but only under the same trusted keys
    res = check_tokens(IDS, forged, policy(issuer), store)
    assert res.reasons[2] == "forged" and res.verified_now == 0
    other = Issuer.generate("eid-platform")
    res = check_tokens(IDS, forged, policy(issuer, issuers={other.name: other.public}), store)
    assert res.reasons[2] == "forged" and res.verified_now == 1
    # and grants verified under the old key do not count under a new key for the same issuer name
    assert set(res.reasons.tolist()) == {"forged", "unknown_issuer"}
    # persisted with an HMAC: a planted entry is refused
    key = bytes(range(32))
    path = store.save(tmp_path / "store.json", key)
    assert len(VerifiedStore.load(path, key)) == len(store)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1  # one bit anywhere in the stored claims
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="HMAC"):
        VerifiedStore.load(path, key)
    with pytest.raises(StoreError, match="HMAC"):  # another node's key
        VerifiedStore.load(store.save(tmp_path / "s2.json", key), bytes(32))


def test_token_verification_names_the_problem(issuer):
    with pytest.raises(TokenRejected) as e:
        verify_token("not-a-token", {issuer.name: issuer.public})
    assert e.value.reason == "malformed"
    t = good(issuer, IDS[0])
    assert verify_token(t, {issuer.name: issuer.public}).sub == IDS[0]
    jwk = issuer.public.to_jwk()
    assert IssuerKey.from_jwk(jwk).fingerprint == issuer.public.fingerprint
    with pytest.raises(TokenError, match="private"):
        IssuerKey.from_jwk({**jwk, "d": "AAAA"})
    forged_rl = _alter_claim(issuer.revocation_list(1, ["x"], AT), revoked=[])
    with pytest.raises(TokenError, match="signature"):
        RevocationList.verify(forged_rl, {issuer.name: issuer.public})


def test_sealed_exchange_drops_refused_positions_and_the_relay_sees_no_token(issuer):
    tokens = [good(issuer, u).encode() for u in IDS]
    tokens[4] = b""

    judge = StoreJudge(IDS, policy(issuer), VerifiedStore())

    parties = {
        "bank": TokenSender("bank", "centre", "run-1", tokens),
        "centre": TokenJudge("centre", "bank", "run-1", len(IDS), judge),
    }

    def restart(name, party):
        if name == "bank":
            return TokenSender.from_state(party.to_state(), tokens)
        return TokenJudge.from_state(party.to_state(), judge)

    transcript = run_local(parties, restart=restart)
    assert parties["bank"].s.accepted.tolist() == parties["centre"].s.accepted.tolist()
    assert parties["bank"].s.accepted.tolist() == [i != 4 for i in range(len(IDS))]
    wire_bytes = b"".join(e.payload for step in transcript.steps for e in step)
    assert not any(u.encode() in wire_bytes for u in IDS) and b"eyJ" not in wire_bytes


def test_a_tampered_token_bundle_does_not_open(issuer):
    tokens = [good(issuer, u).encode() for u in IDS]
    bank = TokenSender("bank", "centre", "run-1", tokens)
    centre = TokenJudge("centre", "bank", "run-1", len(IDS), StoreJudge(IDS, policy(issuer), VerifiedStore()))
    (key,) = centre.start()
    (msg,) = bank.receive([key])
    from protocols.common.party import Envelope

    bad = bytearray(msg.payload)
    bad[-5] ^= 1
    with pytest.raises(ConsentProtocolError, match="does not open"):
        centre.receive([Envelope(msg.sender, msg.recipient, bytes(bad))])


def test_demo_material_spoils_the_configured_shares(tmp_path):
    ids = uscc.generate(2000, np.random.default_rng(2))
    shares = DemoShares(revoked=0.05, expired=0.05, wrong_purpose=0.05, out_of_scope=0.05, forged=0.05)
    day = __import__("datetime").date(2026, 6, 1)
    m = demo_material(
        ids, audience=AUD, purpose="credit_risk_modelling", categories=CATS, day=day, seed=3, shares=shares,
        cache_dir=tmp_path,
    )  # fmt: skip
    p = ConsentPolicy(
        {m.issuer.name: m.issuer}, AUD, "credit_risk_modelling", frozenset(CATS), epoch(day),
        {m.issuer.name: m.revocations()},
    )  # fmt: skip
    counts = check_tokens(ids, m.tokens, p, VerifiedStore()).counts()
    assert set(counts) == {"revoked", "expired", "wrong_purpose", "out_of_scope", "forged"}
    assert all(60 < n < 140 for n in counts.values()), counts
    again = demo_material(
        ids, audience=AUD, purpose="credit_risk_modelling", categories=CATS, day=day, seed=3, shares=shares,
        cache_dir=tmp_path,
    )  # fmt: skip
    assert again.tokens == m.tokens  # cached, byte for byte


def test_enforce_mode_without_material_refuses_to_start(tmp_path):
    from fedcredit.config.sections import ConsentSettings

    text = """
[run]
name = "t"
mode = "vertical-lr"
[parties.bank]
role = "bank"
data = "default_credit"
[parties.credit_centre]
role = "credit_centre"
data = "default_credit"
"""
    sc = config.loads(text)
    why = sc.settings(ConsentSettings).missing_material()
    assert why is not None and "tokens, issuer_keys, revocations" in why and 'mode = "demo"' in why
    from parties.in_process import run_scenario_in_process

    status = run_scenario_in_process(sc, tmp_path)
    assert status["status"] == "failed" and "consent" in json.dumps(status)
    assert config.loads(text + '[consent]\nmode = "demo"\n').settings(ConsentSettings).missing_material() is None


def test_cached_refusals_survive_save_and_load_byte_for_byte(tmp_path):
    """Digests ending in zero bytes (1 in 256) must round-trip (numpy 'S' arrays would strip them)."""
    store = VerifiedStore()
    store.rejected = {bytes([i]) * 31 + b"\x00": ("forged", bytes(31) + b"\x00") for i in range(1, 4)}
    key = bytes(range(32))
    assert VerifiedStore.load(store.save(tmp_path / "s.npz", key), key).rejected == store.rejected


def test_verify_many_in_worker_processes_matches_serial(issuer):
    from fedcredit.consent.check import PARALLEL_MIN, verify_many

    other = Issuer.generate("eid-platform")
    tokens = [good(issuer if i % 7 else other, IDS[i % len(IDS)], token_id=str(i)) for i in range(PARALLEL_MIN + 10)]
    keys = {issuer.name: issuer.public}
    serial = verify_many(tokens, keys, workers=1)
    assert verify_many(tokens, keys, workers=2) == serial
    assert [r for r in serial if isinstance(r, str)] == ["forged"] * sum(1 for i in range(len(tokens)) if i % 7 == 0)


def test_demo_tokens_signed_in_worker_processes_equal_serial_ones(monkeypatch):
    from fedcredit.consent.demo import PARALLEL_MIN

    ids = uscc.generate(PARALLEL_MIN + 5, np.random.default_rng(4))
    day = __import__("datetime").date(2026, 6, 1)
    kw = dict(
        audience=AUD, purpose="credit_risk_modelling", categories=CATS, day=day, seed=1, shares=DemoShares(forged=0.1)
    )
    monkeypatch.setenv("FEDCREDIT_PAILLIER_WORKERS", "1")
    serial = demo_material(ids, **kw).tokens  # type: ignore[arg-type]
    monkeypatch.setenv("FEDCREDIT_PAILLIER_WORKERS", "2")
    assert demo_material(ids, **kw).tokens == serial  # type: ignore[arg-type]
