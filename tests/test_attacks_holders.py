"""Dishonest data holders (issue #14): each deviation of simulations/attack_cases/holders.py, with its control.

Every case is first run against the pre-#14 behaviour (``legacy=True``: bounded statistical masks,
whole decryptions returned) to show that the attack and its ``leaked`` measurement work; then
against the real code, where the dishonest bank recovers nothing and the dishonest centre stays
within the bound stated in docs/protocols/threat-model.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.attack_cases import holders, load_all
from simulations.attacks import handled


def test_control_high_bit_residuals_leak_centre_rows_without_a_trace_under_bounded_masks(tmp_path: Path):
    r = holders.bank_high_bit_above_window(tmp_path, legacy=True)
    assert r.leaked and not r.refused_or_detected  # the attack as first reported works on the old masking
    assert "6/6 centre rows recovered" in r.detail and "identical" in r.detail
    assert not handled(r)


def test_dishonest_bank_high_bit_residuals_recover_nothing_and_are_detected(tmp_path: Path):
    r = holders.bank_high_bit_residuals(tmp_path)
    assert not r.leaked
    assert r.refused_or_detected and r.by == "credit_centre 'centre'" and "round 0" in r.step
    assert "gradient entry 0 of batch 0" in r.detail
    assert handled(r)


def test_dishonest_bank_tags_above_the_window_recover_nothing_and_change_nothing(tmp_path: Path):
    r = holders.bank_high_bit_above_window(tmp_path)
    assert not r.leaked and r.within_bound
    assert "0/6 centre rows recovered" in r.detail and "identical to the honest run" in r.detail


def test_control_dishonest_centre_reads_a_whole_batch_of_labels_when_the_bank_returns_everything(tmp_path: Path):
    r = holders.centre_scaled_residuals(tmp_path, legacy=True)
    assert r.leaked and r.within_bound is False and not handled(r)


def test_dishonest_centre_label_channel_is_within_the_documented_bound(tmp_path: Path):
    r = holders.centre_scaled_residuals(tmp_path)
    assert r.attacker == "centre" and r.within_bound and handled(r)
    correct = int(r.detail.split(" of ")[0].rsplit(" ", 1)[1])
    assert 0 < correct <= 285  # p_c * window_bits for 512-row batches: measured 213 (3 x (95 - 24))


def test_holder_cases_are_registered_for_the_attack_runner():
    names = set(load_all())
    assert {
        "bank/high-bit-residuals/hetero-lr",
        "bank/high-bit-residuals-above-window/hetero-lr",
        "centre/scaled-residuals/hetero-lr",
        "bank/power-of-two-gradients/secureboost",
        "bank/inflated-validation-residuals/hetero-lr",
        "bank/repeat-queries/inference",
        "bank/power-of-two-labels/binning",
    } <= names


def test_control_without_a_book_repeat_queries_get_every_fresh_answer_and_sweeps_are_unlimited(tmp_path: Path):
    r = holders.bank_repeat_queries(tmp_path, legacy=True)
    assert r.within_bound is False and "10 distinct answers" in r.detail and "80 answered" in r.detail


def test_centre_quotas_and_repeat_answers_bound_what_a_dishonest_bank_gets(tmp_path: Path):
    r = holders.bank_repeat_queries(tmp_path)
    assert r.within_bound and handled(r)
    assert "4 distinct answers" in r.detail and "49 answered / 31 refused" in r.detail
    assert r.refused_or_detected and r.by == "credit centre 'c'"


def test_query_book_refuses_a_firm_over_its_quota_and_repeats_within_the_window():
    from protocols.inference.quota import FRESH, REFUSED_FIRM, REPEAT, BookEntry, QueryBook, QueryPolicy

    book = QueryBook(QueryPolicy(per_firm_per_period=1, period_days=30, per_run=10, repeat_window_days=0))
    firm = "91110000100000000X"
    assert [d for d, _ in book.plan("b", "r1", "m", [firm, firm], "2026-01-01")] == [FRESH, REPEAT]
    book.add([BookEntry("2026-01-01", "r1", "b", firm, "m", FRESH, True, [0.5])])
    assert book.plan("b", "r2", "m", [firm], "2026-01-02")[0][0] == REFUSED_FIRM  # window 0 days, quota used
    assert book.plan("other-bank", "r2", "m", [firm], "2026-01-02")[0][0] == FRESH  # quotas are per bank
    assert book.plan("b", "r3", "m", [firm], "2026-01-31")[0][0] == FRESH  # a new period
    wide = QueryBook(QueryPolicy(repeat_window_days=14), book.entries)
    decision, earlier = wide.plan("b", "r2", "m", [firm], "2026-01-10")[0]
    assert decision == REPEAT and earlier is not None and earlier.value == [0.5]


def test_secureboost_power_of_two_gradients_leak_host_bins_within_the_documented_bound(tmp_path: Path):
    r = holders.bank_power_of_two_gradients(tmp_path)
    assert r.leaked  # the exposure is real (as in FATE): the measurement finds it
    assert "38 rows with every host threshold placed" in r.detail and r.within_bound and handled(r)


def test_control_validation_tags_read_36_partial_scores_without_the_high_mask(tmp_path: Path):
    r = holders.bank_inflated_validation_residuals(tmp_path, legacy=True)
    assert "36 centre partial scores recovered" in r.detail and r.within_bound is False


def test_inflated_validation_residuals_read_at_most_the_loss_window(tmp_path: Path):
    r = holders.bank_inflated_validation_residuals(tmp_path)
    assert r.within_bound and handled(r)
    assert "1 centre partial scores recovered" in r.detail  # the one tag inside the 76-bit window


@pytest.mark.slow
def test_dishonest_centre_label_channel_at_production_sizes_is_p_c_times_window_minus_fd():
    """2048-bit keys, 4096-row batches, 10 centre features: 740 labels of the first batch, bound 980 bits."""
    correct, claimed, rows0, bound, caught = holders._run_scaled(
        legacy=False, n=8192, batch_size=4096, p_c=10, key_bits=2048
    )
    assert (correct, claimed, rows0, bound, caught) == (740, 740, 4096, 980, None)


def test_control_power_of_two_labels_place_every_tagged_row_without_the_binning_window(tmp_path: Path):
    """Control: the centre before the window hands the bank every bin sum in full."""
    r = holders.bank_power_of_two_labels_binning(tmp_path, legacy=True)
    assert "200 rows placed" in r.detail and r.within_bound is False


def test_binning_window_bounds_what_power_of_two_labels_place(tmp_path: Path):
    """A bank that encrypts 2^t instead of 0/1 labels reads only bit_length(count) bits per bin:
    at most bit_length(rows) rows placed in the centre's bins per run (11 at 2,000 rows)."""
    r = holders.bank_power_of_two_labels_binning(tmp_path)
    placed = int(r.detail.split(": ")[1].split(" rows placed")[0])
    assert r.attacker == "bank" and r.within_bound and placed <= 11 and handled(r)
