"""One party's data as every protocol sees it: :class:`PartyData`.

Its own module so that the loaders (:mod:`fedcredit.data.loaders`) and the bundled data set
(:mod:`fedcredit.data.default_credit`), which the loaders call, can both build it without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PartyData:
    """One party's rows: ids (normalised valid USCCs, unique), features and optional labels."""

    ids: list[str]
    features: np.ndarray  # float64, shape (n, k)
    feature_names: list[str]
    labels: np.ndarray | None  # int8 0/1 for a bank; None for the credit centre
    # Declared categorical columns: name -> level texts; the column holds codes 0..L-1 (NaN = missing).
    categorical: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)
        if self.features.ndim != 2:
            raise ValueError(f"features must be 2-D, got shape {self.features.shape}")
        n = len(self.ids)
        if self.features.shape[0] != n:
            raise ValueError(f"{n} ids but {self.features.shape[0]} feature rows")
        if self.features.shape[1] != len(self.feature_names):
            raise ValueError(f"{self.features.shape[1]} feature columns but {len(self.feature_names)} names")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int8)
            if self.labels.shape != (n,):
                raise ValueError(f"labels shape {self.labels.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def require_labels(self) -> np.ndarray:
        """The labels, for code that only runs on a bank's data (ValueError if there are none)."""
        if self.labels is None:
            raise ValueError("this party's data has no label column (only a bank's data has labels)")
        return self.labels

    def subset(self, rows: np.ndarray) -> PartyData:
        """Rows ``rows`` (integer positions or boolean mask), in the order given."""
        r = np.asarray(rows)
        if r.dtype == bool:
            r = np.nonzero(r)[0]
        r = r.astype(np.int64, copy=False)
        ids = np.asarray(self.ids, dtype=object)[r].tolist() if r.size else []
        return PartyData(
            ids=ids,
            features=self.features[r],
            feature_names=list(self.feature_names),
            labels=None if self.labels is None else self.labels[r],
            categorical=dict(self.categorical),
        )

    def select(self, ids: list[str]) -> PartyData:
        """Rows for ``ids`` in that order (e.g. the PSI intersection); KeyError for an unknown id."""
        pos = {u: i for i, u in enumerate(self.ids)}
        try:
            return self.subset(np.fromiter((pos[u] for u in ids), dtype=np.int64, count=len(ids)))
        except KeyError as exc:
            raise KeyError(f"id {exc.args[0]!r} not held by this party") from None
