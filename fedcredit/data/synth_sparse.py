"""Real-shaped public records for the synthetic SMEs: structured missingness and text categories.

:func:`fedcredit.data.synth.generate` writes complete numeric tables; public credit data is
neither. :func:`sparsify` turns a generated credit-centre table into what an agency exports:

* **Categorical text columns** (replacing their integer codes): ``tax_grade`` (A/B/M/C/D),
  ``industry_section`` (GB/T 4754 section letter) and ``district_code`` (administrative division).
* **Missingness structured by firm age and size**, as public records are (the default mechanism
  of ``synth.py`` is unchanged, so "missing" carries signal only through age and size, which
  drive default risk there):

  - tax and invoice figures missing for firms younger than a year (no annual filing yet) and
    for a share of micro firms (``si_headcount`` < 5) that file under simplified regimes;
  - ``provident_fund`` missing when a firm has no provident-fund account: most micro firms,
    some small ones;
  - the utility arrears missing when there is no utility contract in the firm's own name
    (firms in shared premises: likelier the smaller the firm);
  - ``si_headcount``/``si_arrears_months`` missing for a share of firms younger than two years;
  - court and penalty records empty (rather than 0) where a firm has none: 90 % of the zeros of
    ``court_judgements`` and ``admin_penalties``, 50 % of those of the two blacklist flags.

  Overall about 30 % of the centre's numeric cells are missing (:data:`TARGET_MISSING`).

Deterministic for a seed. ``fedcredit data synth --sparse`` applies it to a generated directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedcredit.data import uscc

TARGET_MISSING = 0.30
TAX_GRADES = "ABMCD"
# synth.INDUSTRIES in order -> GB/T 4754-2017 section letters
INDUSTRY_SECTIONS = ("C", "F", "E", "G", "I", "H", "A", "K", "L", "O")
CATEGORICAL = ("tax_grade", "industry_section", "district_code")
FILING_COLUMNS = ("tax_paid", "invoice_amount", "invoice_count")
UTILITY_COLUMNS = ("water_arrears", "power_arrears", "gas_arrears")
SI_COLUMNS = ("si_headcount", "si_arrears_months")


def sparsify(centre: pd.DataFrame, *, seed: int = 42) -> pd.DataFrame:
    """A copy of a ``synth.py`` credit-centre table with text categories and structured missingness."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    df = centre.copy()
    n = len(df)
    age = df["firm_age"].to_numpy(dtype=float)
    head = df["si_headcount"].to_numpy(dtype=float)
    micro, small = head < 5, head < 20
    u = lambda: rng.random(n)  # noqa: E731 - one fresh uniform per row and rule
    miss = {c: np.zeros(n, dtype=bool) for c in df.columns}
    filing = (age < 1.0) | (micro & (u() < 0.5))
    for c in FILING_COLUMNS:
        miss[c] = filing.copy()
    miss["provident_fund"] = np.where(micro, u() < 0.8, np.where(small, u() < 0.4, u() < 0.1))
    shared = u() < np.where(micro, 0.75, np.where(small, 0.45, 0.15))
    for c in UTILITY_COLUMNS:
        miss[c] = shared.copy()
    young_si = (age < 2.0) & (u() < 0.6)
    for c in SI_COLUMNS:
        miss[c] = young_si.copy()
    for c, p_none in (
        ("court_judgements", 0.9),
        ("admin_penalties", 0.9),
        ("dishonest_debtor", 0.5),
        ("consumption_restricted", 0.5),
    ):
        miss[c] = (df[c].to_numpy() == 0) & (u() < p_none)  # "no record" exported as empty, not 0
    for c, m in miss.items():
        if m.any():
            df[c] = df[c].astype(float).mask(m)
    df.insert(1, "tax_grade", np.array(list(TAX_GRADES))[df.pop("tax_grade_code").to_numpy(dtype=int)])
    df["tax_grade"] = df["tax_grade"].mask(filing)  # no filing, no grade yet
    df["industry_section"] = np.array(INDUSTRY_SECTIONS)[df.pop("industry").to_numpy(dtype=int)]
    df["district_code"] = np.array(uscc.DIVISIONS)[df.pop("district").to_numpy(dtype=int)]
    return df


def missing_share(df: pd.DataFrame) -> float:
    """Share of missing cells among the feature columns (not the id)."""
    feats = df.drop(columns=[c for c in ("uscc",) if c in df.columns])
    return float(feats.isna().to_numpy().mean())


README = """
## Sparse public records (`--sparse`, fedcredit/data/synth_sparse.py)

The credit centre's table was rewritten as an agency would export it:

* text categories instead of codes: `tax_grade` (A/B/M/C/D; missing when the firm has not filed
  yet), `industry_section` (GB/T 4754 section letter: {sections}), `district_code`
  (administrative division code);
* missing values structured by firm age and size: tax/invoice figures missing for firms under a
  year old and half of micro firms (fewer than 5 insured staff); `provident_fund` missing for
  80 % of micro, 40 % of small (< 20) and 10 % of other firms; utility arrears missing for firms
  without their own utility contract (75 % / 45 % / 15 %); social-insurance figures missing for
  60 % of firms under two years old; "no record" exported as an empty cell for 90 % of the
  zeros of `court_judgements` and `admin_penalties` and 50 % of those of the blacklist flags.

Missing share of the centre's feature cells: {share:.1%}. The default mechanism above is
unchanged: missingness is informative only through firm age and size. Read the table with
`categorical = {cats}` and `allow_missing = true` in the centre's `[parties.*]` table.
"""


def sparsify_dir(directory: str | Path, *, seed: int = 42) -> float:
    """Rewrite ``DIR/credit_centre.csv`` (or ``.parquet``) sparsified; document it in README.md."""
    d = Path(directory)
    csv, pq = d / "credit_centre.csv", d / "credit_centre.parquet"
    if csv.exists():
        df = sparsify(pd.read_csv(csv, dtype={"uscc": str}), seed=seed)
        df.to_csv(csv, index=False)
    elif pq.exists():
        df = sparsify(pd.read_parquet(pq), seed=seed)
        df.to_parquet(pq, index=False)
    else:
        raise FileNotFoundError(f"no credit_centre.csv or .parquet in {d}")
    share = missing_share(df)
    with open(d / "README.md", "a", encoding="utf-8") as fh:
        fh.write(README.format(sections=", ".join(INDUSTRY_SECTIONS), share=share, cats=list(CATEGORICAL)))
    return share
