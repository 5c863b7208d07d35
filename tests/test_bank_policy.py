"""Bank-side round policy (#13): each bank refuses, with a named reason, a round its own scenario
does not allow -- too few banks, a SecAgg+ threshold at or below half the shares, parameters
other than its own scenario's. Each test first shows the honest round passes."""

from __future__ import annotations

import pytest

from fedcredit.config import loads
from parties.horizontal.policy import PolicyViolation, RoundPolicy


def _banks(n: int) -> str:
    return "".join(f'\n[parties.bank_{i}]\nrole = "bank"\ndata = "default_credit"\n' for i in range(n))


def _policy(n_banks: int, extra: str = "", aggregation: str = "secagg+") -> RoundPolicy:
    sc = loads(
        f'[run]\nname = "t"\nmode = "horizontal"\n{_banks(n_banks)}\n[horizontal]\naggregation = "{aggregation}"\n'
        + extra
    )
    return RoundPolicy.of(sc, "bank_0")


HONEST_4 = {"share_num": 4, "threshold": 3, "sample_num": 4}


def test_honest_secagg_round_passes():
    _policy(4).check_secagg_setup(HONEST_4)


@pytest.mark.parametrize(
    "cfg, why",
    [
        ({**HONEST_4, "threshold": 1}, "threshold 1 is not above half of the 4 shares"),
        ({**HONEST_4, "threshold": 2}, "threshold 2 is not above half"),
        ({"share_num": 2, "threshold": 2, "sample_num": 2}, "fewer than 3 banks"),
        ({**HONEST_4, "sample_num": 2}, "fewer than 3 banks"),
        ({"share_num": 3, "threshold": 2, "sample_num": 4}, "differ from this bank's scenario"),
        ({"share_num": 4}, "malformed"),
    ],
)
def test_a_coordinators_secagg_parameters_are_refused_naming_the_rule(cfg, why):
    with pytest.raises(PolicyViolation, match=why) as err:
        _policy(4).check_secagg_setup(cfg)
    assert "bank 'bank_0'" in str(err.value)


def test_explicit_scenario_parameters_are_what_the_bank_expects():
    p = _policy(5, "[horizontal.secagg]\nnum_shares = 5\nreconstruction_threshold = 4\n")
    p.check_secagg_setup({"share_num": 5, "threshold": 4, "sample_num": 5})
    with pytest.raises(PolicyViolation, match="differ"):
        p.check_secagg_setup({"share_num": 5, "threshold": 3, "sample_num": 5})


@pytest.mark.parametrize("aggregation", ["plain", "ckks"])
def test_two_banks_only_with_an_explicit_opt_in(aggregation, caplog):
    _policy(3, aggregation=aggregation).check_federation()
    with pytest.raises(PolicyViolation, match="2 bank.*minimum is 3.*allow_two_banks"):
        _policy(2, aggregation=aggregation).check_federation()
    with caplog.at_level("WARNING"):
        _policy(2, "allow_two_banks = true\n", aggregation=aggregation).check_federation()
    assert "allow_two_banks" in caplog.text and "learn the other's update" in caplog.text
