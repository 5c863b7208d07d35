"""Synthetic SMEs: a credit-centre table and one table per bank, with a known default mechanism.

Why synthetic data: real public-credit and loan data cannot be shared, yet protocols must be
tested at realistic sizes (millions of firms), with valid USCC join keys, non-IID banks,
partially overlapping customers and customers the centre does not know. Because the default
mechanism is known and uses public AND bank features nonlinearly (thresholds and a
public x bank interaction), joint modelling measurably beats bank-only modelling.

Everything is generated in fixed-size chunks of firms with vectorised numpy and streamed to
CSV (pyarrow's CSV writer) or Parquet (``ParquetWriter``), so memory stays bounded and a
million firms take seconds. Chunk ``i`` draws from ``SeedSequence([seed, i])``: the same seed
and sizes always give byte-identical files. The ground truth is written to ``DIR/README.md``
(see :func:`_readme`).
"""

from __future__ import annotations

import logging
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from fedcredit.data import uscc

log = logging.getLogger(__name__)

CHUNK = 100_000
MAX_FIRMS = 10**8  # the USCC organisation-code body has 8 digits

INDUSTRIES = (
    "manufacturing",
    "wholesale & retail",
    "construction",
    "transport & logistics",
    "IT & software",
    "catering & hospitality",
    "agriculture",
    "real-estate services",
    "business services",
    "other",
)
IND_P = np.array([0.22, 0.24, 0.08, 0.07, 0.07, 0.08, 0.05, 0.04, 0.10, 0.05])
IND_LOGREV = np.array([0.5, 0.2, 0.6, 0.2, -0.1, -0.5, -0.3, 0.1, -0.2, -0.4])  # size by industry
IND_TAX = np.array([0.030, 0.015, 0.028, 0.022, 0.035, 0.025, 0.008, 0.040, 0.030, 0.020])
IND_REV_PER_EMP = np.array([5e5, 9e5, 6e5, 7e5, 4e5, 2.5e5, 3e5, 8e5, 4e5, 4e5])
TAX_GRADES = "ABMCD"  # tax_grade_code 0..4
TAX_EFFECT = np.array([-0.7, 0.0, 0.5, 1.0, 1.7])
TERMS = np.array([6, 12, 24, 36, 60])
P_UNKNOWN = 0.2  # share of firms the credit centre has no record of (e.g. registered elsewhere)
BASE_LOGIT = -4.6

CENTRE_COLUMNS = (
    "tax_grade_code",
    "tax_paid",
    "invoice_amount",
    "invoice_count",
    "si_headcount",
    "si_arrears_months",
    "provident_fund",
    "water_arrears",
    "power_arrears",
    "gas_arrears",
    "court_judgements",
    "dishonest_debtor",
    "consumption_restricted",
    "admin_penalties",
    "firm_age",
    "industry",
    "registered_capital",
    "district",
)
BANK_COLUMNS = (
    "loan_amount",
    "term_months",
    "collateral_ratio",
    "account_inflow",
    "account_outflow",
    "existing_debt",
    "internal_rating",
    "default_12m",
)
_FLOAT_COLS = {"firm_age", "collateral_ratio"}
_INT8_COLS = {
    "tax_grade_code",
    "dishonest_debtor",
    "consumption_restricted",
    "industry",
    "district",
    "internal_rating",
    "default_12m",
}


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _schema(columns: tuple[str, ...]) -> pa.Schema:
    def t(c: str) -> pa.DataType:
        return pa.float64() if c in _FLOAT_COLS else pa.int8() if c in _INT8_COLS else pa.int64()

    return pa.schema([pa.field("uscc", pa.string())] + [pa.field(c, t(c)) for c in columns])


@dataclass
class BankProfile:
    """One bank's portfolio: who it lends to and on what terms (the non-IID part)."""

    name: str
    coverage: float  # mean probability that a known firm is a customer
    industry_weight: np.ndarray  # relative appetite per industry (mean 1 under IND_P)
    size_tilt: float  # >0 prefers large firms, <0 small firms
    unknown_share: float  # target share of customers the centre does not know
    loan_scale: float
    collateral_scale: float
    term_p: np.ndarray
    offset: float  # bank-specific shift of the default logit (underwriting quality)


def bank_profiles(k: int, seed: int) -> list[BankProfile]:
    """Deterministic portfolios for ``k`` banks (bank_a, bank_b, ...)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10**9]))
    tilts = np.linspace(-0.6, 0.6, k) if k > 1 else np.zeros(1)
    out = []
    for b in range(k):
        d = rng.dirichlet(np.ones(len(IND_P)))
        out.append(
            BankProfile(
                name=f"bank_{string.ascii_lowercase[b]}",
                coverage=min(0.6, 1.5 / k) * rng.uniform(0.8, 1.2),
                industry_weight=d / float(IND_P @ d),
                size_tilt=float(tilts[b]),
                unknown_share=rng.uniform(0.05, 0.15),
                loan_scale=rng.uniform(0.7, 1.3),
                collateral_scale=rng.uniform(0.6, 1.4),
                term_p=rng.dirichlet(np.full(len(TERMS), 2.0)),
                offset=rng.uniform(-0.5, 0.5),
            )
        )
    return out


@dataclass
class BankStats:
    name: str
    rows: int = 0
    defaults: int = 0
    unknown_to_centre: int = 0

    @property
    def default_rate(self) -> float:
        return self.defaults / self.rows if self.rows else 0.0


@dataclass
class SynthStats:
    firms: int
    centre_rows: int = 0
    banks: list[BankStats] = field(default_factory=list)
    banks_per_firm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seconds: float = 0.0


def _firms(rng: np.random.Generator, gidx: np.ndarray, mult: int, add: int) -> dict[str, np.ndarray]:
    """Public (centre-side) attributes and hidden drivers for the firms ``gidx``."""
    n = gidx.size
    ind = rng.choice(len(IND_P), size=n, p=IND_P)
    district = rng.integers(0, len(uscc.DIVISIONS), size=n)
    age = np.round(rng.gamma(2.0, 4.0, size=n), 1)
    zsize = rng.standard_normal(n)
    health = rng.standard_normal(n) + 0.15 * (np.log1p(age) - 2.0)
    revenue = np.exp(15.0 + IND_LOGREV[ind] + 1.1 * zsize + 0.15 * np.log1p(age))
    q = health + 0.5 * rng.standard_normal(n)
    grade = np.select([q > 1.0, q > -0.3, q > -1.3], [0, 1, 3], default=4)
    grade = np.where(age < 1.0, 2, grade)  # M: new taxpayers
    headcount = (rng.random(n) < _sig(1.5 + health)) * rng.poisson(revenue / IND_REV_PER_EMP[ind])
    arrears = [
        np.where(rng.random(n) < _sig(-2.8 - health), np.round(revenue * 0.002 * rng.lognormal(0, 1, n)), 0)
        for _ in range(3)
    ]
    dishonest = rng.random(n) < _sig(-5.0 - 1.8 * health)
    restricted = dishonest | (rng.random(n) < _sig(-5.5 - 1.2 * health))
    codes = uscc.from_indices((gidx * mult + add) % MAX_FIRMS, district)
    return {
        "uscc": codes,
        "tax_grade_code": grade,
        "tax_paid": np.round(revenue * IND_TAX[ind] * (0.6 + 0.4 * _sig(health))),
        "invoice_amount": np.round(revenue * rng.uniform(0.6, 1.0, n)),
        "invoice_count": rng.poisson(revenue / 2e4),
        "si_headcount": headcount,
        "si_arrears_months": np.minimum(24, rng.poisson(np.exp(-1.6 - 1.1 * health))),
        "provident_fund": np.round(headcount * 3600 * (rng.random(n) < _sig(0.5 + 0.8 * health + 0.3 * zsize))),
        "water_arrears": arrears[0],
        "power_arrears": arrears[1],
        "gas_arrears": arrears[2],
        "court_judgements": rng.poisson(np.exp(-2.3 - 0.9 * health + 0.25 * zsize)),
        "dishonest_debtor": dishonest,
        "consumption_restricted": restricted,
        "admin_penalties": rng.poisson(np.exp(-2.0 - 0.4 * health)),
        "firm_age": age,
        "industry": ind,
        "registered_capital": np.round(np.exp(np.log(revenue) - 0.5 + 0.8 * rng.standard_normal(n)), -4),
        "district": district,
        # hidden drivers (never written)
        "_zsize": zsize,
        "_health": health,
        "_revenue": revenue,
        "_known": rng.random(n) >= P_UNKNOWN,
        "_u": rng.random(n),  # firm-level default draw shared by all its banks (correlated defaults)
    }


def _membership(rng: np.random.Generator, f: dict[str, np.ndarray], p: BankProfile) -> np.ndarray:
    f_unknown = p.unknown_share / (1.0 - p.unknown_share) * (1.0 - P_UNKNOWN) / P_UNKNOWN
    pi = p.coverage * p.industry_weight[f["industry"]] * np.exp(p.size_tilt * f["_zsize"] - p.size_tilt**2 / 2)
    pi = np.minimum(0.95, pi * np.where(f["_known"], 1.0, f_unknown))
    return rng.random(pi.size) < pi


def default_logit(f: dict[str, np.ndarray], b: dict[str, np.ndarray], offset: float) -> np.ndarray:
    """The ground truth: log-odds of default within 12 months (documented in README.md)."""
    utility = f["water_arrears"] + f["power_arrears"] + f["gas_arrears"]
    leverage = (b["existing_debt"] + b["loan_amount"]) / np.maximum(f["invoice_amount"], 1.0)
    coll = np.minimum(b["collateral_ratio"], 1.0)
    risky_grade = f["tax_grade_code"] >= 3
    return (
        BASE_LOGIT
        + offset
        + TAX_EFFECT[f["tax_grade_code"]]
        + 1.2 * (f["si_arrears_months"] >= 3)
        + 0.8 * (utility > 0)
        + 1.6 * f["dishonest_debtor"]
        + 0.5 * f["consumption_restricted"]
        + 0.45 * np.log1p(f["court_judgements"])
        + 0.3 * np.log1p(f["admin_penalties"])
        + 0.6 * (f["firm_age"] < 2.0)
        + 1.4 * (leverage > 0.8)
        + 0.9 * (b["account_outflow"] > 1.1 * b["account_inflow"])
        - 0.8 * coll
        - 1.0 * coll * risky_grade
        + 0.25 * (b["term_months"] >= 36)
        - 0.4 * f["_health"]
    )


def _bank_rows(rng: np.random.Generator, f: dict[str, np.ndarray], p: BankProfile) -> dict[str, np.ndarray]:
    n = f["industry"].size
    h, rev = f["_health"], f["_revenue"]
    inflow = rev / 12 * rng.uniform(0.2, 1.0, n) * np.exp(0.25 * rng.standard_normal(n))
    b = {
        "uscc": f["uscc"],
        "loan_amount": np.round(rev * rng.uniform(0.05, 0.4, n) * p.loan_scale, -3),
        "term_months": TERMS[rng.choice(len(TERMS), size=n, p=p.term_p)],
        "collateral_ratio": np.round(np.clip(rng.beta(2.0, 3.0, n) * p.collateral_scale, 0.0, 1.5), 3),
        "account_inflow": np.round(inflow),
        "account_outflow": np.round(inflow * np.exp(0.08 * rng.standard_normal(n) - 0.06 * h)),
        "existing_debt": np.round(rev * rng.gamma(1.5, 0.25, n) * np.exp(-0.3 * h)),
        "internal_rating": np.clip(np.round(5.5 - 1.5 * (0.5 * h + 0.85 * rng.standard_normal(n))), 1, 10),
    }
    b["default_12m"] = f["_u"] < _sig(default_logit(f, b, p.offset))
    return b


class _Sink:
    """Streams chunks of one table to CSV or Parquet."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str):
        self.schema = schema
        self._fh = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(path, schema, compression="snappy")
        else:
            import pyarrow.csv as pacsv

            self._fh = open(path, "wb")
            # the header is written by hand so that it, like the ids, is unquoted
            self._fh.write((",".join(schema.names) + "\n").encode())
            try:  # ids never contain commas or quotes
                opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
            except TypeError:  # pyarrow < 15
                opts = pacsv.WriteOptions(include_header=False)
            self.writer = pacsv.CSVWriter(self._fh, schema, write_options=opts)

    def write(self, cols: dict[str, np.ndarray], rows: np.ndarray | None = None) -> None:
        arrays = []
        for fld in self.schema:
            v = cols[fld.name] if rows is None else cols[fld.name][rows]
            arrays.append(pa.array(v.astype(fld.type.to_pandas_dtype()) if fld.name != "uscc" else v, fld.type))
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()
        if self._fh is not None:
            self._fh.close()


def generate(
    firms: int,
    banks: int,
    out: str | Path,
    *,
    seed: int = 42,
    fmt: str = "csv",
    chunk: int = CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> SynthStats:
    """Write ``out/credit_centre.<fmt>``, ``out/bank_<x>.<fmt>`` and ``out/README.md``.

    ``on_chunk(firms_done)`` is called after each chunk (the CLI's progress bar)."""
    if not 1 <= firms <= MAX_FIRMS:
        raise ValueError(f"firms must be in 1..{MAX_FIRMS}")
    if not 1 <= banks <= 26:
        raise ValueError("banks must be in 1..26")
    if fmt not in ("csv", "parquet"):
        raise ValueError("fmt must be 'csv' or 'parquet'")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prof = bank_profiles(banks, seed)
    key_rng = np.random.default_rng(np.random.SeedSequence([seed, 10**9 + 1]))
    mult = int(key_rng.integers(1, MAX_FIRMS // 2)) * 2 + 1  # odd ...
    if mult % 5 == 0:  # ... and not a multiple of 5: invertible mod 10^8, so codes are distinct
        mult += 2
    add = int(key_rng.integers(0, MAX_FIRMS))
    centre = _Sink(out / f"credit_centre.{fmt}", _schema(CENTRE_COLUMNS), fmt)
    sinks = [_Sink(out / f"{p.name}.{fmt}", _schema(BANK_COLUMNS), fmt) for p in prof]
    stats = SynthStats(
        firms=firms, banks=[BankStats(p.name) for p in prof], banks_per_firm=np.zeros(banks + 1, dtype=np.int64)
    )
    try:
        for c, start in enumerate(range(0, firms, chunk)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, c]))
            gidx = np.arange(start, min(firms, start + chunk), dtype=np.int64)
            f = _firms(rng, gidx, mult, add)
            known = f["_known"]
            centre.write(f, np.nonzero(known)[0])
            stats.centre_rows += int(known.sum())
            held = np.zeros(gidx.size, dtype=np.int64)
            for p, sink, st in zip(prof, sinks, stats.banks):
                rows = np.nonzero(_membership(rng, f, p))[0]
                held[rows] += 1
                sub = {k: v[rows] for k, v in f.items()}
                b = _bank_rows(rng, sub, p)
                sink.write(b)
                st.rows += rows.size
                st.defaults += int(b["default_12m"].sum())
                st.unknown_to_centre += int((~sub["_known"]).sum())
            stats.banks_per_firm += np.bincount(held, minlength=banks + 1)
            if on_chunk is not None:
                on_chunk(int(gidx[-1]) + 1)
    finally:
        centre.close()
        for s in sinks:
            s.close()
    stats.seconds = time.perf_counter() - t0
    (out / "README.md").write_text(_readme(stats, prof, seed, fmt))
    log.info("synthetic SMEs: %d firms, %d banks -> %s in %.1f s", firms, banks, out, stats.seconds)
    return stats


def _readme(stats: SynthStats, prof: list[BankProfile], seed: int, fmt: str) -> str:
    bank_lines = "\n".join(
        f"| {b.name} | {b.rows:,} | {b.default_rate:.2%} | {b.unknown_to_centre / max(b.rows, 1):.1%} | "
        f"{p.size_tilt:+.2f} | {', '.join(INDUSTRIES[i] for i in np.argsort(-p.industry_weight)[:2])} | {p.offset:+.2f} |"
        for b, p in zip(stats.banks, prof)
    )
    multi = int(stats.banks_per_firm[2:].sum())
    grades = ", ".join(f"{g}={i}" for i, g in enumerate(TAX_GRADES))
    inds = ", ".join(f"{i}={n}" for i, n in enumerate(INDUSTRIES))
    dists = ", ".join(f"{i}={d}" for i, d in enumerate(uscc.DIVISIONS))
    return f"""# Synthetic SME credit data (fedcredit data synth)

Generated by `fedcredit data synth --firms {stats.firms} --banks {len(prof)} --seed {seed} --format {fmt}`.
Synthetic: no real enterprise is described. Same arguments -> identical files.

## Files
- `credit_centre.{fmt}`: {stats.centre_rows:,} firms the public credit centre knows (of {stats.firms:,};
  {P_UNKNOWN:.0%} of firms are unknown to it). Columns: `uscc` + {len(CENTRE_COLUMNS)} public features.
- `bank_*.{fmt}`: each bank's customers: `uscc` + 7 bank features + label `default_12m`.
  {multi:,} firms are customers of two or more banks; every bank also holds firms the centre does not know.

| bank | rows | default rate | unknown to centre | size tilt | top industries | risk offset |
|---|---|---|---|---|---|---|
{bank_lines}

## Columns (all numeric; categories are integer codes)
Ids: `uscc` is a valid 18-character unified social credit code (GB 32100-2015), positions 3-8 = the
firm's district division code. Public (credit centre): `tax_grade_code` ({grades}; M = new taxpayer,
firm age < 1 year), `tax_paid`, `invoice_amount` (yuan/year), `invoice_count`, `si_headcount`
(social-insurance headcount), `si_arrears_months`, `provident_fund` (yuan/year), `water_arrears`,
`power_arrears`, `gas_arrears` (yuan outstanding), `court_judgements`, `dishonest_debtor` (0/1),
`consumption_restricted` (0/1), `admin_penalties`, `firm_age` (years), `industry` ({inds}),
`registered_capital` (yuan), `district` ({dists}).
Bank: `loan_amount` (yuan), `term_months`, `collateral_ratio` (collateral value / loan),
`account_inflow`, `account_outflow` (yuan/month through this bank), `existing_debt` (yuan),
`internal_rating` (1 best .. 10 worst; the bank's own noisy view of firm health), `default_12m` (0/1).

## Generative model
Hidden per firm: size z ~ N(0,1), health h ~ N(0,1) (+ a small firm-age effect); revenue
R = exp(15 + industry effect + 1.1 z + 0.15 log(1 + age)). Public features are noisy consequences of
R and h (e.g. tax grade from h + noise; arrears, judgements, penalties more likely when h is low).
Bank membership: P(customer) = coverage x industry appetite x exp(tilt z - tilt^2/2), times a factor for
firms unknown to the centre chosen to give the bank's target unknown share (5-15 %). Bank features
come from R (through the bank's share of wallet) and weakly from h.

Default ground truth (logit, per firm and bank; 1[.] is an indicator):

    logit = {BASE_LOGIT} + bank offset
          + tax grade effect (A {TAX_EFFECT[0]:+}, B {TAX_EFFECT[1]:+}, M {TAX_EFFECT[2]:+}, C {TAX_EFFECT[3]:+}, D {TAX_EFFECT[4]:+})
          + 1.2 1[si_arrears_months >= 3] + 0.8 1[water + power + gas arrears > 0]
          + 1.6 dishonest_debtor + 0.5 consumption_restricted
          + 0.45 log(1 + court_judgements) + 0.3 log(1 + admin_penalties) + 0.6 1[firm_age < 2]
          + 1.4 1[(existing_debt + loan_amount) / invoice_amount > 0.8]      (bank x public interaction)
          + 0.9 1[account_outflow > 1.1 account_inflow]
          - 0.8 min(collateral_ratio, 1) - 1.0 min(collateral_ratio, 1) 1[tax grade C or D]
          + 0.25 1[term_months >= 36] - 0.4 h

default_12m = 1[u < sigmoid(logit)] with one uniform u per firm shared by all its banks, so a firm's
defaults at different banks are correlated. The public features carry most of the signal and the
leverage threshold needs both parties' columns, so bank + centre models beat bank-only models.
"""
