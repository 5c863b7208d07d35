"""The credit centre's side of federated binning: fine bins, encrypted sums, WOE of its own columns.

The centre never decrypts anything (it has no key) and releases only, per fine bin of each of its
columns, the row count and a re-randomised encrypted label sum; every released bin holds at
least ``min_bin_rows`` rows (its own floor, applied in :func:`~protocols.binning.fine.fine_bin`).
It learns from the bank which of its columns pass the IV threshold and their WOE tables, which
it needs to WOE-encode its columns for the scorecard.
"""

from __future__ import annotations

import secrets
from typing import Protocol, TypeVar

import numpy as np

from protocols.binning.config import BinningConfig
from protocols.binning.fine import ColumnBins, fine_bin
from protocols.binning.messages import (
    BinningResult,
    CentreKept,
    CentreState,
    EncryptedBinSums,
    EncryptedLabels,
    window_bits,
)
from protocols.binning.woe import ColumnWoe, drop_correlated, woe_encode
from protocols.common import wire
from protocols.common.party import Envelope, Party, ProtocolError, data_digest, open_envelope
from protocols.paillier import EncryptedVector, PaillierError, PublicKey

STATE_VERSION = "binning-centre-state/1"


class _Versioned(Protocol):
    version: str


S = TypeVar("S", bound=_Versioned)


class BinningError(ProtocolError):
    """Federated binning cannot go on; the message names the party, step and column."""


def decode_state(state: bytes, cls: type[S], version: str, role: str) -> S:
    """A binning party's persisted state (``cls``, written at ``version``), or a
    :class:`BinningError` naming the ``role`` whose state it is. Both roles restore through it."""
    try:
        s = wire.decode(state, cls)
    except wire.WireError as exc:
        raise BinningError(f"{role} binning state cannot be restored: {exc}") from None
    if s.version != version:
        raise BinningError(f"{role} binning state is {s.version!r}, not {version!r}")
    return s


class BinningCentre(Party):
    """Holds ``X`` (aligned rows, columns ``names``; categorical columns as level codes)."""

    role = "credit_centre"
    error_type = BinningError

    def __init__(
        self,
        name: str,
        peer: str,
        X: np.ndarray,
        names: list[str],
        config: BinningConfig,
        *,
        categorical: dict[str, int] | None = None,
    ):
        self.name, self.peer, self.config = name, peer, config
        self.X = np.asarray(X, dtype=np.float64)
        self.names = list(names)
        self.codes, self.bins = fine_bin(
            self.X, self.names, categorical=categorical, n_bins=config.n_fine_bins, min_rows=config.min_bin_rows
        )
        self.woe: dict[str, ColumnWoe] = {}
        self.kept: list[str] = []
        self.dropped_correlated: dict[str, str] = {}
        self.sums_sent = False
        self._done = False
        self._digest = data_digest(self.X)

    @property
    def finished(self) -> bool:
        return self._done

    def start(self) -> list[Envelope]:
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        if env.kind == "EncryptedLabels" and not self.sums_sent and not self._done:
            out = self._bin_sums(open_envelope(env, EncryptedLabels, "binning step 1"))
            self.sums_sent = True
            return [self.send(self.peer, out)]
        if env.kind == "BinningResult" and self.sums_sent and not self._done:
            return [self.send(self.peer, self._apply(open_envelope(env, BinningResult, "binning step 3")))]
        raise self._fail(f"unexpected {env.kind} at this step of binning")

    # -- persistence between relay steps ------------------------------------------------------
    def to_state(self) -> bytes:
        return wire.encode(CentreState(STATE_VERSION, self.name, self.peer, self._digest, self.sums_sent))

    @classmethod
    def from_state(
        cls,
        state: bytes,
        X: np.ndarray,
        names: list[str],
        config: BinningConfig,
        *,
        categorical: dict[str, int] | None = None,
    ) -> BinningCentre:
        """The party again from :meth:`to_state` bytes and the same data (refused on other data)."""
        s = decode_state(state, CentreState, STATE_VERSION, "centre")
        party = cls(s.name, s.peer, X, names, config, categorical=categorical)
        if party._digest != s.data_digest:
            raise party._fail("the data given to from_state is not the data this party was built with")
        party.sums_sent = bool(s.sums_sent)
        return party

    # -- step 2 ------------------------------------------------------------------------------
    def _bin_sums(self, msg: EncryptedLabels) -> EncryptedBinSums:
        n = self.X.shape[0]
        if msg.n_rows != n:
            raise self._fail(f"encrypted labels for {msg.n_rows} rows, but {n} aligned rows here")
        try:
            pk = PublicKey.from_bytes(msg.public_key, insecure_test_key=self.config.insecure_test_key)
            enc = EncryptedVector.from_bytes(pk, msg.labels)
        except PaillierError as exc:
            raise self._fail(f"bad encrypted labels: {exc}") from None
        if len(enc) != n:
            raise self._fail(f"{len(enc)} label ciphertexts for {n} aligned rows")
        n_bins, counts, parts = [], [], []
        for j, cb in enumerate(self.bins):
            c = self.codes[:, j]
            order = np.argsort(c, kind="stable")
            bounds = np.searchsorted(c[order], np.arange(cb.n_bins + 1))
            for b in range(cb.n_bins):
                rows = order[bounds[b] : bounds[b + 1]]
                # an empty bin's sum is the encryption of 0: a fresh one, never the ciphertext 1
                parts.append(enc[rows].sum() if rows.size else pk.encrypt_zero(1))
                counts.append(rows.size)
            n_bins.append(cb.n_bins)
        sums = parts[0]
        for p in parts[1:]:
            sums = sums.concat(p)
        windows = window_bits(np.asarray(counts, dtype=np.int64))
        masks = [secrets.randbelow(pk.n - (1 << int(w))) for w in windows]
        return EncryptedBinSums(
            columns=self.names,
            kinds=[cb.kind for cb in self.bins],
            n_bins=np.asarray(n_bins, dtype=np.int32),
            counts=np.asarray(counts, dtype=np.int64),
            sums=sums.add_plain(masks).to_bytes(),  # not fresh (sums of the bank's ciphertexts): re-randomised
            mask_low=np.array([r & ((1 << int(w)) - 1) for r, w in zip(masks, windows)], dtype=np.int64),
        )

    # -- step 4 ------------------------------------------------------------------------------
    def _apply(self, msg: BinningResult) -> CentreKept:
        unknown = [c for c in msg.kept if c not in self.names]
        if unknown or len(set(msg.kept)) != len(msg.kept):
            raise self._fail(f"binning result names columns that are not ours (or twice): {unknown or msg.kept}")
        k = len(msg.kept)
        if msg.n_fine.shape != (k,) or msg.n_final.shape != (k,):
            raise self._fail("binning result: per-column sizes do not match the kept columns")
        if int(msg.n_fine.sum()) != msg.groups.size or int(msg.n_final.sum()) != msg.woe.size:
            raise self._fail("binning result: group/WOE arrays do not match their declared sizes")
        if not np.isfinite(msg.woe).all():
            raise self._fail("binning result: non-finite WOE value")
        go = np.concatenate([[0], np.cumsum(msg.n_fine)])
        wo = np.concatenate([[0], np.cumsum(msg.n_final)])
        for j, col in enumerate(msg.kept):
            cb = self.bins[self.names.index(col)]
            g = msg.groups[go[j] : go[j + 1]].astype(np.int32)
            if g.size != cb.n_bins or g.min(initial=0) < -1 or g.max(initial=-1) >= msg.n_final[j]:
                raise self._fail(f"binning result for column {col!r}: bin map does not fit its {cb.n_bins} fine bins")
            w = msg.woe[wo[j] : wo[j + 1]].astype(np.float64)
            self.woe[col] = ColumnWoe(col, cb.kind, g, w, np.zeros(0), np.zeros(0), float("nan"))
        encoded = self.transform(msg.kept)
        self.kept, self.dropped_correlated = drop_correlated(encoded, list(msg.kept), self.config.max_corr)
        self._done = True
        return CentreKept(columns=self.kept)

    def transform(self, columns: list[str] | None = None, X: np.ndarray | None = None) -> np.ndarray:
        """WOE-encoded columns (default: the kept ones) of ``X`` (default: the binned rows)."""
        cols = self.kept if columns is None else columns
        return woe_encode(cols, self.names, self.codes, self.bins, self.woe, X)

    @property
    def column_bins(self) -> dict[str, ColumnBins]:
        """The centre's own cut points / level groups (never sent)."""
        return {cb.name: cb for cb in self.bins}
