"""The three messages of federated binning (wire dataclasses; see ``docs/protocols/binning.md``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EncryptedLabels:
    """Bank -> centre: its public key and ``[[y_i]]`` for every aligned row, in alignment order."""

    public_key: bytes
    n_rows: int
    labels: bytes


@dataclass
class EncryptedBinSums:
    """Centre -> bank: per column, the row count and re-randomised ``[[sum of y]]`` of every fine bin.

    ``n_bins[j]`` fine bins for column ``columns[j]`` (the last is its missing bin); ``counts``
    and the ciphertexts in ``sums`` are concatenated in column order. No edges, no level names.
    Each sum is masked so that the bank, which decrypts it, learns only its low ``w_b`` bits --
    all an honest 0/1 label sum of ``count_b`` rows has (``docs/protocols/binning.md``, "A bank
    that encrypts more than 0/1").
    """

    columns: list[str]
    kinds: list[str]
    n_bins: np.ndarray  # int32, one per column
    counts: np.ndarray  # int64, sum(n_bins)
    sums: bytes  # [[sum of y + R_b]] per bin: R_b uniform in [0, n - 2^w_b), w_b = bit length of count_b
    mask_low: np.ndarray  # int64, R_b mod 2^w_b: the bank reads only the low w_b bits of each sum


@dataclass
class BinningResult:
    """Bank -> centre: which centre columns pass the IV threshold (best first) and their WOE tables.

    For kept column ``kept[j]``: ``groups`` holds its fine->final bin map (``n_fine[j]`` entries,
    -1 for an empty bin) and ``woe`` its ``n_final[j]`` WOE values, concatenated in order.
    """

    kept: list[str]
    n_fine: np.ndarray  # int32
    n_final: np.ndarray  # int32
    groups: np.ndarray  # int32
    woe: np.ndarray  # float64


@dataclass
class CentreKept:
    """Centre -> bank: the centre's columns it keeps after dropping correlated ones (best first)."""

    columns: list[str]


@dataclass
class BankState:
    """The bank's binning party between two relay steps (node-local, never sent: it holds the
    private key). The decrypted fine counts of each centre column are concatenated as in
    :class:`EncryptedBinSums`; everything else is rebuilt from the bank's own data."""

    version: str
    name: str
    peer: str
    data_digest: str
    step: str
    private_key: bytes
    columns: list[str]
    kinds: list[str]
    n_bins: np.ndarray  # int32
    events: np.ndarray  # int64
    counts: np.ndarray  # int64
    kept_centre: list[str]


@dataclass
class CentreState:
    """The centre's binning party between two relay steps (node-local): whether it has sent its
    sums (so a replayed label message is refused); the bins are rebuilt from its own data."""

    version: str
    name: str
    peer: str
    data_digest: str
    sums_sent: bool


def window_bits(counts: np.ndarray) -> np.ndarray:
    """Bits the bank may read of each bin's label sum: an honest sum of 0/1 labels over ``count``
    rows is at most ``count``, so ``bit_length(count)`` bits (at least 1) hold all of it."""
    c = np.maximum(np.asarray(counts, dtype=np.int64), 1)
    return np.array([int(v).bit_length() for v in c.tolist()], dtype=np.int64)
