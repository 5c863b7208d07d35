"""Party data as every protocol sees it, and the one entry point that loads it.

A party's data is a :class:`~fedcredit.data.party_data.PartyData`: valid, unique USCCs, a
float64 feature matrix and (for a bank) 0/1 labels. ``load_party_data`` turns a scenario's
``source`` string into one:

* ``"default_credit"`` -- the bundled UCI data, split vertically as FATE does;
* ``"synthetic:DIR"`` -- a directory written by ``fedcredit data synth``;
* anything else -- a CSV/Excel/Parquet file path (any encoding, sniffed delimiter; see
  :mod:`fedcredit.data.readers`), validated against the role's schema.

For file-based sources the train/test split is by a keyed hash of the USCC, so a bank and the
credit centre agree on it without talking to each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fedcredit.data.party_data import PartyData
from fedcredit.data.readers import ReadOptions
from fedcredit.data.schema import DataError, schema_for
from fedcredit.data.validate import PARQUET_SUFFIXES, check_table

TEST_FRACTION = 0.3
PARTS = ("train", "test", "all")
__all__ = ["PARTS", "TEST_FRACTION", "PartyData", "hash_split_mask", "load_party_data", "load_party_table"]


def load_party_table(path: str | Path, role: str, opts: ReadOptions | None = None) -> PartyData:
    """Load and validate one CSV/Excel/Parquet party table; raises :class:`DataError` on the first problem.

    ``opts`` (see :class:`~fedcredit.data.readers.ReadOptions`) names the id and label columns,
    the encoding, delimiter, categorical columns and whether empty cells are allowed.
    """
    schema = schema_for(role)
    rep = check_table(path, schema.role, opts)
    rep.raise_if_bad()
    df = rep.frame
    assert df is not None
    names = schema.feature_columns(list(df.columns))
    return PartyData(
        ids=df[schema.id_column].tolist(),
        features=df[names].to_numpy(dtype=np.float64) if names else np.zeros((len(df), 0)),
        feature_names=names,
        labels=df[schema.label_column].to_numpy().astype(np.int8) if schema.label_column else None,
        categorical={c: lv for c, lv in rep.categorical_levels.items() if c in names},
    )


def hash_split_mask(ids: list[str], seed: int = 42, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """True for ids in the test part: a keyed BLAKE2b hash of the USCC, so parties agree offline."""
    key = f"fedcredit-split-{seed}".encode()[:64]
    h = np.fromiter(
        (int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest(), "big") for u in ids),
        dtype=np.uint64,
        count=len(ids),
    )
    return (h / np.float64(2**64)) < test_fraction


def _find_table(directory: Path, stem: str) -> Path:
    for suffix in (".csv", *PARQUET_SUFFIXES, ".csv.gz", ".xlsx"):
        p = directory / f"{stem}{suffix}"
        if p.exists():
            return p
    raise DataError(f"no {stem}.csv or {stem}.parquet in directory", file=str(directory))


def _part(data: PartyData, part: str, seed: int) -> PartyData:
    if part == "all":
        return data
    test = hash_split_mask(data.ids, seed)
    return data.subset(test if part == "test" else ~test)


def load_party_data(
    source: str,
    role: str,
    *,
    party: str = "",
    part: str = "all",
    seed: int = 42,
    scaled: bool = True,
    opts: ReadOptions | None = None,
) -> PartyData:
    """Load ``role``'s data from ``source`` (see module docstring); ``part`` is train, test or all.

    For ``synthetic:DIR`` a bank's ``party`` names its table (``bank_a`` or just ``a``).
    ``seed`` keys the USCC-hash split of file sources; ``default_credit`` always uses its fixed,
    documented stratified split (seed 42) so results stay comparable with ANCHORS.md.
    ``opts`` applies to file and synthetic sources (how to read the party's own file).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    schema = schema_for(role)
    if source == "default_credit":
        from fedcredit.data.default_credit import load_vertical

        bank, centre = load_vertical(part, scaled=scaled)
        return bank if schema.role == "bank" else centre
    if source.startswith("synthetic:"):
        directory = Path(source.split(":", 1)[1])
        if schema.role == "credit_centre":
            stem = "credit_centre"
        else:
            if not party:
                raise DataError(
                    "a bank needs its party name (e.g. 'bank_a') to load synthetic data", file=str(directory)
                )
            stem = party if party.startswith("bank_") else f"bank_{party}"
        return _part(load_party_table(_find_table(directory, stem), schema.role, opts), part, seed)
    return _part(load_party_table(source, schema.role, opts), part, seed)
