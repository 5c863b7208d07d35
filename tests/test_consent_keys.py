"""The key-first consent exchange (protocols.consent v2): the bank sends each token's signature
key; the centre asks for whole tokens only for keys it never verified. Each attack on the short
path is planted and shown to be caught, after the honest run passes."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from fedcredit.consent.check import ConsentPolicy, StoreJudge, VerifiedStore, check_keys, unknown_keys
from fedcredit.consent.demo import epoch
from fedcredit.consent.tokens import Issuer
from fedcredit.data import uscc
from protocols.common import wire
from protocols.common.channel import Channel, public_key_of
from protocols.common.party import Envelope, run_local
from protocols.consent import ConsentProtocolError, TokenJudge, TokenSender
from protocols.consent.messages import KEY_CHARS, PROTOCOL, UNKNOWN_KEY, ConsentRequest, RequestBody, token_key

DAY = 86_400
AT = epoch(__import__("datetime").date(2026, 6, 1))
AUD = ("bank", "centre")
IDS = uscc.generate(10, np.random.default_rng(5))


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer.generate("eid-platform")


def _policy(issuer: Issuer) -> ConsentPolicy:
    return ConsentPolicy({issuer.name: issuer.public}, AUD, "credit_risk_modelling", frozenset({"tax"}), AT, {})


def _tokens(issuer: Issuer) -> list[bytes]:
    out = [
        issuer.issue(u, AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY, token_id=f"t{i}").encode()
        for i, u in enumerate(IDS)
    ]
    out[3] = b""  # no token for this firm
    return out


def _exchange(tokens: list[bytes], judge: StoreJudge) -> tuple[np.ndarray, list[str]]:
    parties = {
        "bank": TokenSender("bank", "centre", "run", tokens),
        "centre": TokenJudge("centre", "bank", "run", len(tokens), judge),
    }
    t = run_local(parties)  # type: ignore[arg-type]
    kinds = [e.kind for step in t.steps for e in step]
    assert np.array_equal(parties["bank"].s.accepted, parties["centre"].s.accepted)
    return parties["bank"].s.accepted, kinds


def test_a_known_token_set_needs_no_whole_token_and_gets_the_same_verdict(issuer):
    store, tokens = VerifiedStore(), _tokens(issuer)
    first, kinds1 = _exchange(tokens, StoreJudge(IDS, _policy(issuer), store))
    assert "ConsentFull" in kinds1 and "ConsentRequest" in kinds1  # first sight: whole tokens asked for
    judge = StoreJudge(IDS, _policy(issuer), store)
    second, kinds2 = _exchange(tokens, judge)
    assert kinds2 == ["ConsentKey", "ConsentTokens", "ConsentVerdict"]
    assert judge.result is not None and judge.result.verified_now == 0
    assert first.tolist() == second.tolist() == [i != 3 for i in range(len(IDS))]


def test_a_known_key_presented_for_another_firm_is_refused(issuer):
    store, tokens = VerifiedStore(), _tokens(issuer)
    _exchange(tokens, StoreJudge(IDS, _policy(issuer), store))  # all filed
    swapped = list(tokens)
    swapped[0], swapped[1] = tokens[1], tokens[0]
    judge = StoreJudge(IDS, _policy(issuer), store)
    accepted, kinds = _exchange(swapped, judge)
    assert "ConsentFull" not in kinds  # both keys known: judged on the stored claims
    assert not accepted[0] and not accepted[1] and accepted[2]
    assert judge.result is not None and judge.result.counts()["wrong_subject"] == 2


def _alter(token: bytes, **claims: object) -> bytes:
    h, p, s = token.split(b".")
    body = json.loads(base64.urlsafe_b64decode(p + b"=" * (-len(p) % 4)))
    body.update(claims)
    return h + b"." + base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=") + b"." + s


def test_an_altered_token_gains_nothing_on_either_path(issuer):
    tokens = _tokens(issuer)
    # Fresh store: the altered token is asked for whole and fails its signature.
    bad = list(tokens)
    bad[0] = _alter(tokens[0], purpose="other", exp=AT + 999 * DAY)
    judge = StoreJudge(IDS, _policy(issuer), VerifiedStore())
    accepted, _ = _exchange(bad, judge)
    assert not accepted[0] and judge.result is not None and judge.result.counts() == {"forged": 1, "no_token": 1}
    # Known signature: the altered bytes are never read, the stored (signed) claims decide.
    store = VerifiedStore()
    _exchange(tokens, StoreJudge(IDS, _policy(issuer), store))
    bad[0] = _alter(tokens[0], sub=IDS[1])
    judge = StoreJudge(IDS, _policy(issuer), store)
    accepted, _ = _exchange(bad, judge)
    assert accepted[0]  # its signed claims name IDS[0], the firm at this position


def test_an_unknown_key_without_its_whole_token_is_malformed_and_a_bad_token_is_named(issuer):
    tokens = _tokens(issuer)
    keys = np.array([token_key(t) for t in tokens], dtype=f"S{KEY_CHARS}")
    store = VerifiedStore()
    assert unknown_keys(keys, store).tolist() == [i for i in range(len(IDS)) if i != 3]
    res = check_keys(IDS, keys, np.zeros(0, np.int64), b"", _policy(issuer), store)
    assert res.counts() == {"malformed": len(IDS) - 1, "no_token": 1}  # nothing verified, nothing accepted
    assert token_key(b"not-a-jws") == UNKNOWN_KEY and token_key(b"") == b""
    broken = list(tokens)
    broken[2] = b"not-a-jws"
    judge = StoreJudge(IDS, _policy(issuer), VerifiedStore())
    accepted, kinds = _exchange(broken, judge)
    assert "ConsentFull" in kinds and not accepted[2]
    assert judge.result is not None and judge.result.counts() == {"malformed": 1, "no_token": 1}


@pytest.mark.parametrize("positions", [[0, 0], [5, 1], [-1], [len(IDS)]])
def test_the_bank_refuses_a_request_outside_the_intersection(issuer, positions):
    tokens = _tokens(issuer)
    bank = TokenSender("bank", "centre", "run", tokens)
    centre = TokenJudge("centre", "bank", "run", len(IDS), StoreJudge(IDS, _policy(issuer), VerifiedStore()))
    (key,) = centre.start()
    (keys_msg,) = bank.receive([key])
    (request,) = centre.receive([keys_msg])
    assert request.kind == "ConsentRequest"
    bank.receive([request])  # the honest request is answered (state is not kept: a fresh bank below)
    bank2 = TokenSender("bank", "centre", "run", tokens)
    bank2.receive([key])
    # the centre's side of the link to this bank: a request the centre really sealed
    link = Channel(
        centre.s.secret, public_key_of(bank2.s.secret), protocol=PROTOCOL, session="run", me="centre", peer="bank"
    )
    msg = ConsentRequest(
        PROTOCOL,
        "run",
        len(IDS),
        link.seal(
            wire.encode(RequestBody(len(IDS), np.array(positions, dtype=np.int64))),
            message="ConsentRequest",
            count=len(IDS),
        ),
    )
    with pytest.raises(ConsentProtocolError, match="outside the intersection"):
        bank2.receive([Envelope("centre", "bank", wire.encode(msg))])


def test_large_lookups_take_the_sorted_path_and_find_exactly_the_filed_keys(issuer):
    from fedcredit.consent.tokens import Grant

    rng = np.random.default_rng(9)
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
    sigs = [alphabet[rng.integers(0, 64, KEY_CHARS)].tobytes() for _ in range(6000)]
    filed, fresh = sigs[:5000], sigs[5000:]
    grant = Grant(issuer.name, IDS[0], AUD, "credit_risk_modelling", ("tax",), AT - DAY, AT + DAY, "j", AT)
    store = VerifiedStore()
    store.add_many([b"h.p." + k for k in filed], [grant] * len(filed), {issuer.name: issuer.public})
    assert len(store) == 5000
    query = np.array(fresh + filed[::-1] + [b""], dtype=f"S{KEY_CHARS}")  # > 4096: the sorted path
    rows = store.rows(query)
    assert (rows[:1000] == -1).all() and rows[-1] == -1
    assert (store.cols["digest"][rows[1000:-1]] == query[1000:-1]).all()
    small = store.rows(query[995:1010])  # the plain path agrees
    assert small.tolist() == rows[995:1010].tolist()
