"""Federated WOE/IV binning (issue 17): same bins and WOE as centralised binning, tamper and leak checks."""

from __future__ import annotations

import gmpy2
import numpy as np
import pandas as pd
import pytest

from protocols.binning.bank import BinningBank
from protocols.binning.centre import BinningCentre, BinningError
from protocols.binning.config import BinningConfig
from protocols.binning.messages import EncryptedBinSums
from protocols.binning.woe import merge_column
from protocols.common import wire
from protocols.common.party import Envelope, run_local
from protocols.paillier import EncryptedVector, generate_keypair

N = 3000


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(1024, insecure_test_key=True)


def _data(seed: int = 5):
    rng = np.random.default_rng(seed)
    Xc = rng.normal(size=(N, 4))
    grade = rng.choice(5, size=N, p=[0.3, 0.3, 0.2, 0.19, 0.01])  # level 4 is rare: pooled
    logit = 1.2 * Xc[:, 0] - 0.6 * Xc[:, 1] + 0.5 * (grade >= 3) - 1.4
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    Xc[rng.random(N) < 0.3, 0] = np.nan  # 30 % missing
    Xc[:, 3] = grade.astype(float)
    Xc[rng.random(N) < 0.1, 3] = np.nan
    Xb = np.column_stack([rng.normal(size=N) - 0.8 * y, rng.normal(size=N)])
    return Xb, Xc, y


CFG = BinningConfig(key_bits=1024, insecure_test_key=True, n_fine_bins=10, min_bin_rows=40, min_iv=0.02)
NAMES = ["tax", "fund", "noise", "grade"]


def _run(keypair, Xb, Xc, y, cfg=CFG, tamper=None):
    bank = BinningBank("bank", "cc", Xb, ["b0", "b1"], y, cfg, private_key=keypair[1])
    centre = BinningCentre("cc", "bank", Xc, NAMES, cfg, categorical={"grade": 5})
    parties = {"bank": bank, "cc": centre}
    if tamper is None:
        transcript = run_local(parties)
    else:
        outgoing = bank.start()
        reply = centre.receive(outgoing)
        transcript = None
        bank.receive([tamper(reply[0])])
    return bank, centre, transcript


def test_federated_bins_and_woe_equal_centralised(keypair):
    Xb, Xc, y = _data()
    bank, centre, _ = _run(keypair, Xb, Xc, y)
    st = CFG.merge_settings()
    for j, col in enumerate(NAMES):
        cb = centre.bins[j]
        codes = cb.codes(Xc[:, j])
        # centralised: pooled data, counts by pandas, same fine bins, same merge settings
        g = pd.DataFrame({"bin": codes, "y": y}).groupby("bin")["y"].agg(["sum", "count"])
        g = g.reindex(range(cb.n_bins), fill_value=0)
        ref = merge_column(col, cb.kind, g["sum"].to_numpy(), g["count"].to_numpy(), st)
        fed = bank.centre[col]
        assert np.array_equal(fed.group, ref.group), col
        assert np.array_equal(fed.woe, ref.woe) and fed.iv == ref.iv, col
    # the centre holds exactly the WOE tables the bank computed, for the columns it keeps
    assert centre.kept and set(centre.kept) <= set(bank.centre_passed_iv)
    assert "noise" not in bank.centre_passed_iv  # an unrelated column does not pass the IV threshold
    for col in centre.kept:
        assert np.array_equal(centre.woe[col].woe, bank.centre[col].woe)
    assert bank.kept_centre == centre.kept


def test_woe_and_iv_match_optbinning_on_the_final_bins(keypair):
    optbinning = pytest.importorskip("optbinning")
    Xb, Xc, y = _data()
    bank, centre, _ = _run(keypair, Xb, Xc, y)
    cb, fed = centre.bins[0], bank.centre["tax"]
    # the final numeric bins as cut points: a cut wherever consecutive fine bins change group
    value_groups = fed.group[: cb.n_value_bins]
    cuts = [cb.edges[i] for i in range(len(cb.edges)) if value_groups[i] != value_groups[i + 1]]
    ob = optbinning.OptimalBinning(
        name="tax", dtype="numerical", user_splits=cuts, user_splits_fixed=[True] * len(cuts), monotonic_trend=None
    )
    ob.fit(Xc[:, 0], y)
    table = ob.binning_table.build()
    rows = table.iloc[: len(cuts) + 1]
    n_value = len(cuts) + 1
    assert np.array_equal(rows["Event"].to_numpy(dtype=np.int64), fed.events[:n_value])
    assert np.allclose(rows["WoE"].to_numpy(dtype=float), fed.woe[:n_value], atol=1e-9)
    missing = table.loc[table["Bin"] == "Missing"].iloc[0]
    assert int(missing["Event"]) == fed.events[-1] and missing["WoE"] == pytest.approx(fed.woe[-1])
    assert float(table.loc["Totals", "IV"]) == pytest.approx(fed.iv, rel=1e-9)


def test_missing_and_categorical_bins(keypair):
    Xb, Xc, y = _data()
    bank, centre, _ = _run(keypair, Xb, Xc, y)
    tax = bank.centre["tax"]
    assert tax.group[-1] == tax.woe.size - 1  # the missing bin is a final bin of its own
    assert tax.events[-1] + tax.nonevents[-1] == int(np.isnan(Xc[:, 0]).sum())
    grade = centre.bins[3]
    assert grade.kind == "categorical" and grade.level_bin[4] in grade.level_bin[:4]  # rare level pooled
    assert grade.n_value_bins == 4
    # every released fine bin holds at least the centre's floor (or nothing)
    for cb, j in zip(centre.bins, range(4)):
        counts = np.bincount(centre.codes[:, j], minlength=cb.n_bins)
        assert ((counts == 0) | (counts >= CFG.min_bin_rows)).all(), cb.name


def test_sums_are_rerandomised_before_they_leave(keypair):
    """Plant the leak (the sum of the bank's own ciphertexts as they are) and show it differs from what is sent."""
    Xb, Xc, y = _data()
    bank = BinningBank("bank", "cc", Xb, ["b0", "b1"], y, CFG, private_key=keypair[1])
    centre = BinningCentre("cc", "bank", Xc, NAMES, CFG, categorical={"grade": 5})
    out = bank.start()
    pk = keypair[0]
    enc_labels = EncryptedVector.from_bytes(pk, wire.decode(out[0].payload, type_for("EncryptedLabels")).labels)
    codes = centre.codes[:, 1]
    plain_product = enc_labels[np.flatnonzero(codes == 0)].sum().ciphertexts[0]  # what a lazy centre would send
    sent = wire.decode(centre.receive(out)[0].payload, EncryptedBinSums)
    at = int(centre.bins[0].n_bins)
    first = EncryptedVector.from_bytes(pk, sent.sums).ciphertexts[at]
    # The masked sum is product * (1+n)^R; without re-randomisation, dividing by the bank's own
    # product leaves (1+n)^R, which is 1 mod n: the bank could test which of its ciphertexts a bin holds.
    link = first * gmpy2.invert(plain_product, pk.nsquare) % pk.nsquare
    assert link % pk.n != 1  # the bank cannot link the sum to its own ciphertexts' randomness
    w = int(sent.counts[at]).bit_length()
    d = int(keypair[1].decrypt_raw([first])[0])
    assert (d - int(sent.mask_low[at])) % (1 << w) == int(y[codes == 0].sum())


def type_for(name: str):
    from protocols.binning import messages

    return getattr(messages, name)


def _tamper_counts(env: Envelope) -> Envelope:
    msg = wire.decode(env.payload, EncryptedBinSums)
    msg.counts = msg.counts.copy()
    msg.counts[0] += 5  # rows that do not exist (a consistent lie is just other data: see binning.md)
    return Envelope(env.sender, env.recipient, wire.encode(msg))


def _tamper_sums(env: Envelope) -> Envelope:
    msg = wire.decode(env.payload, EncryptedBinSums)
    width = len(msg.sums) // msg.counts.size
    msg.sums = msg.sums[width:] + msg.sums[:width]  # bins' sums rotated
    return Envelope(env.sender, env.recipient, wire.encode(msg))


@pytest.mark.parametrize("tamper", [_tamper_counts, _tamper_sums])
def test_tampered_bin_sums_are_caught(keypair, tamper):
    Xb, Xc, y = _data()
    with pytest.raises(BinningError, match=r"bank 'bank': binning step 2: column '\w+'"):
        _run(keypair, Xb, Xc, y, tamper=tamper)


def test_label_derived_centre_column_is_refused(keypair):
    Xb, Xc, y = _data()
    Xc = Xc.copy()
    Xc[:, 2] = y + np.random.default_rng(1).normal(scale=0.05, size=N)  # a "public" column derived from labels
    with pytest.raises(
        BinningError, match=r"bank 'bank': credit centre column 'noise' has IV [0-9.]+ on its fine bins.*label-derived"
    ):
        _run(keypair, Xb, Xc, y)


def test_wrong_row_count_is_refused(keypair):
    Xb, Xc, y = _data()
    bank = BinningBank("bank", "cc", Xb, ["b0", "b1"], y, CFG, private_key=keypair[1])
    centre = BinningCentre("cc", "bank", Xc[:-1], NAMES, CFG, categorical={"grade": 5})
    with pytest.raises(BinningError, match=r"encrypted labels for 3000 rows, but 2999 aligned rows"):
        centre.receive(bank.start())


def test_iv_report_covers_both_parties(keypair):
    Xb, Xc, y = _data()
    bank, _, _ = _run(keypair, Xb, Xc, y)
    rep = pd.DataFrame(bank.iv_report())
    assert set(rep["party"]) == {"bank", "credit_centre"}
    assert set(rep["column"]) == {"b0", "b1", *NAMES}
    assert rep.loc[rep.column == "b0", "kept"].item() and not rep.loc[rep.column == "b1", "kept"].item()
    assert rep.loc[rep.column == "b1", "reason"].item().startswith("IV below")
