"""Issue 17 "done when": on synthetic data with ~30 % missing centre values and categorical text
columns, the federated scorecard runs without any imputation and beats the bank-only model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fedcredit.data.loaders import load_party_data
from fedcredit.data.readers import ReadOptions
from fedcredit.data.synth import generate
from fedcredit.data.synth_sparse import CATEGORICAL, missing_share, sparsify_dir
from protocols.binning.config import BinningConfig
from protocols.hetero_lr.config import HeteroLRConfig
from protocols.scorecard.local import train_scorecard
from protocols.scorecard.points import ScoreScale


def test_sparsify_is_structured_and_documented(tmp_path):
    generate(3000, 1, tmp_path, seed=4)
    share = sparsify_dir(tmp_path, seed=4)
    df = pd.read_csv(tmp_path / "credit_centre.csv", dtype={"uscc": str})
    assert 0.25 <= share <= 0.40 and missing_share(df) == share
    assert set(df["tax_grade"].dropna()) <= set("ABMCD") and df["industry_section"].str.fullmatch("[A-T]").all()
    # structured: young firms miss their tax figures far more often than old ones
    young = df["firm_age"] < 1
    assert df.loc[young, "tax_paid"].isna().mean() == 1.0
    assert df.loc[~young, "tax_paid"].isna().mean() < 0.5
    assert "Sparse public records" in (tmp_path / "README.md").read_text()


def test_scorecard_on_sparse_data_beats_bank_only(tmp_path):
    generate(15000, 1, tmp_path, seed=3)
    sparsify_dir(tmp_path, seed=3)
    src = f"synthetic:{tmp_path}"
    bank = load_party_data(src, "bank", party="bank_a")
    centre = load_party_data(src, "credit_centre", opts=ReadOptions(categorical=CATEGORICAL, allow_missing=True))
    known = set(centre.ids)
    common = [u for u in bank.ids if u in known]
    bank, centre = bank.select(common), centre.select(common)
    assert np.isnan(centre.features).mean() > 0.25  # no imputation anywhere below
    test = np.random.default_rng(0).random(len(common)) < 0.3
    bt, bv, ct, cv = bank.subset(~test), bank.subset(test), centre.subset(~test), centre.subset(test)
    lr = HeteroLRConfig(
        epochs=8, batch_size=1024, learning_rate=0.5, lr_decay=0.3, momentum=0.9, l2=0.001,
        key_bits=1024, insecure_test_key=True, validation_fraction=0.0, early_stopping_patience=0,
    )  # fmt: skip
    sc = train_scorecard(
        bt.features, bt.feature_names, bt.labels, ct.features, ct.feature_names,
        binning=BinningConfig(key_bits=1024, insecure_test_key=True, min_bin_rows=30),
        lr=lr, scale=ScoreScale(), centre_categorical=centre.categorical,
    )  # fmt: skip
    fed_auc = roc_auc_score(bv.labels, -sc.score(bv.features, cv.features))
    # bank-only: the bank's own WOE columns, centralised LR (its best case)
    own = LogisticRegression(max_iter=1000).fit(sc.bank.transform_own(), bt.labels)
    bank_auc = roc_auc_score(bv.labels, own.predict_proba(sc.bank.transform_own(X=bv.features))[:, 1])
    assert fed_auc >= bank_auc + 0.03, (fed_auc, bank_auc)
    assert any(c in sc.centre.kept for c in CATEGORICAL)  # a categorical column made it into the card
    texts = {r["range"] for r in sc.centre_points.rows}
    assert any("missing" in t for t in texts)  # and missing values have their own points
