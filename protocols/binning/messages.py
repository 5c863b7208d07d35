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
    """

    columns: list[str]
    kinds: list[str]
    n_bins: np.ndarray  # int32, one per column
    counts: np.ndarray  # int64, sum(n_bins)
    sums: bytes


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
