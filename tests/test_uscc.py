"""Unified social credit codes: check character, validation, bulk helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.data import uscc

REAL_FORMAT_EXAMPLES = ["91350100M000100Y43", "9144030071526726XG", "91440300708461136T"]


@pytest.mark.parametrize("code", REAL_FORMAT_EXAMPLES)
def test_known_real_examples_are_valid(code):
    assert uscc.is_valid(code)
    assert uscc.validation_error(code) is None
    assert uscc.check_character(code[:17]) == code[17]
    assert uscc.valid_mask([code]).all()


@pytest.mark.parametrize("code", REAL_FORMAT_EXAMPLES)
def test_corrupted_check_character_is_rejected(code):
    bad = uscc.corrupt_check_character(code)
    assert bad != code
    assert not uscc.is_valid(bad)
    assert "check character" in uscc.validation_error(bad)
    with pytest.raises(uscc.InvalidUSCC, match="check character"):
        uscc.validate(bad)
    # every other wrong check character is rejected too
    for ch in uscc.ALPHABET:
        if ch != code[17]:
            assert not uscc.is_valid(code[:17] + ch)


def test_every_single_substitution_is_detected():
    code = REAL_FORMAT_EXAMPLES[1]
    for pos in range(17):
        for ch in uscc.ALPHABET:
            if ch != code[pos]:
                assert not uscc.is_valid(code[:pos] + ch + code[pos + 1 :]), (pos, ch)


def test_check_character_hand_computed():
    # weights 3^(i-1) mod 31; for 91350100M000100Y4 the weighted sum is 1640 = 52*31 + 28,
    # so the check character is ALPHABET[31 - 28] = '3'
    first17 = "91350100M000100Y4"
    total = sum(uscc.ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    assert total == 1640
    assert uscc.check_character(first17) == "3"


@pytest.mark.parametrize(
    "code, fragment",
    [
        ("9144030071526726X", "length 17"),
        ("9144030071526726XGG", "length 19"),
        ("9144030071526726IG", "alphabet"),
        ("8144030071526726XG", "registration authority"),
        ("91A4030071526726XG", "division"),
        (12345, "not a string"),
    ],
)
def test_validation_error_names_problem(code, fragment):
    assert fragment in uscc.validation_error(code)
    assert not uscc.valid_mask([code]).any()


def test_normalisation():
    assert uscc.validate("  9144030071526726xg ") == "9144030071526726XG"


def test_generate_distinct_valid_reproducible():
    a = uscc.generate(500, np.random.default_rng(3))
    b = uscc.generate(500, np.random.default_rng(3))
    assert a == b and len(set(a)) == 500
    assert all(uscc.is_valid(c) for c in a)
    assert {c[2:8] for c in a} <= set(uscc.DIVISIONS)


def test_from_indices_matches_from_index():
    idx = np.array([0, 1, 9, 12345678, 99_999_999, 4_2000_000])
    div = np.arange(idx.size) % len(uscc.DIVISIONS)
    got = uscc.from_indices(idx, div)
    want = [uscc.from_index(int(i), division=uscc.DIVISIONS[d]) for i, d in zip(idx, div)]
    assert got.tolist() == want
    assert uscc.valid_mask(got).all()
    with pytest.raises(ValueError):
        uscc.from_indices(np.array([10**8]))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=uscc.ALPHABET + "IOZSVa -", min_size=16, max_size=19))
def test_valid_mask_agrees_with_scalar_rule(s):
    assert bool(uscc.valid_mask([s])[0]) == uscc.is_valid(s)


def test_valid_mask_on_mixed_batch():
    good = uscc.generate(200, np.random.default_rng(0))
    bad = [uscc.corrupt_check_character(c) for c in good[:50]]
    batch = good + bad + [None, "", "中" * 18]
    mask = uscc.valid_mask(batch)
    assert mask.tolist() == [uscc.is_valid(c) for c in batch]
    assert mask.sum() == 200


def test_one_check_routine_shared_with_psi():
    """fedcredit and PSI check codes with the same rules (protocols.psi.ids is the one copy)."""
    from protocols.psi import ids

    assert set(uscc.ENTITY_TYPES) == set(ids.USCC_AUTHORITIES)
    assert uscc.ALPHABET == ids.USCC_ALPHABET and uscc.WEIGHTS == ids.USCC_WEIGHTS
    with pytest.raises(uscc.InvalidUSCC, match="alphabet"):
        uscc.check_character("9144030071526726I")
    with pytest.raises(uscc.InvalidUSCC, match="17 characters"):
        uscc.check_character("914403")
