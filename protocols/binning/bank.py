"""The bank's side of federated binning: encrypted labels out, WOE/IV of every column, selection.

The bank bins its own columns locally. For the centre's columns it learns, per fine bin, the
row count and the number of events (the standard exposure of hetero binning; each fine bin
holds at least the centre's ``min_bin_rows`` rows), never a row's bin, an edge or a level name.
It checks what it decrypts (event counts within ``0..count``, every column's counts summing to
the aligned rows and its events to the bank's own event total), so a centre that alters sums or
counts is caught, and it refuses a centre column whose IV is above ``max_iv`` as label-derived.
"""

from __future__ import annotations

import numpy as np

from protocols.binning.config import BinningConfig
from protocols.binning.fine import ColumnBins, fine_bin
from protocols.binning.messages import (
    BankState,
    BinningResult,
    CentreKept,
    EncryptedBinSums,
    EncryptedLabels,
    window_bits,
)
from protocols.binning.woe import ColumnWoe, drop_correlated, merge_column, select_by_iv, woe_encode, woe_iv
from protocols.common import wire
from protocols.common.party import Envelope, Party, data_digest, open_envelope
from protocols.paillier import EncryptedVector, PaillierError, PrivateKey, generate_keypair

from .centre import BinningError, decode_state

_WAIT_SUMS, _WAIT_KEPT, _DONE = "sums", "kept", "done"
STATE_VERSION = "binning-bank-state/1"


class BinningBank(Party):
    """Holds ``X`` (its own aligned columns ``names``) and 0/1 labels ``y`` in alignment order."""

    role = "bank"
    error_type = BinningError

    def __init__(
        self,
        name: str,
        peer: str,
        X: np.ndarray,
        names: list[str],
        y: np.ndarray,
        config: BinningConfig,
        *,
        categorical: dict[str, int] | None = None,
        private_key: PrivateKey | None = None,
    ):
        self.name, self.peer, self.config = name, peer, config
        self.y = np.asarray(y, dtype=np.int64)
        if self.y.ndim != 1 or not np.isin(self.y, (0, 1)).all():
            raise BinningError(f"bank {name!r}: labels must be a 1-D 0/1 vector")
        self.X = np.asarray(X, dtype=np.float64)
        self.names = list(names)
        self._sk = private_key
        # own columns: fine bins with the same floor, merged like the centre's (no floor needed
        # for privacy here, but the same layout keeps both sides' bins comparable)
        self.codes, self.bins = fine_bin(
            self.X, self.names, categorical=categorical, n_bins=config.n_fine_bins, min_rows=config.min_bin_rows
        )
        st = config.merge_settings()
        self.own: dict[str, ColumnWoe] = {}
        for j, cb in enumerate(self.bins):
            counts = np.bincount(self.codes[:, j], minlength=cb.n_bins)
            events = np.bincount(self.codes[:, j], weights=self.y, minlength=cb.n_bins).astype(np.int64)
            self.own[cb.name] = merge_column(cb.name, cb.kind, events, counts, st)
        self.centre: dict[str, ColumnWoe] = {}
        self.kept_own: list[str] = []
        self.dropped_own: dict[str, str] = {}
        self.kept_centre: list[str] = []
        self.centre_passed_iv: list[str] = []
        self.centre_fine: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        self._state = _WAIT_SUMS
        self._digest = data_digest(self.X, self.y)

    @property
    def finished(self) -> bool:
        return self._state == _DONE

    def start(self) -> list[Envelope]:
        if self._sk is None:
            _, self._sk = generate_keypair(self.config.key_bits, insecure_test_key=self.config.insecure_test_key)
        enc = self._sk.encrypt(self.y)
        msg = EncryptedLabels(public_key=self._sk.public_key.to_bytes(), n_rows=len(self.y), labels=enc.to_bytes())
        return [self.send(self.peer, msg)]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        if self._state == _WAIT_SUMS and env.kind == "EncryptedBinSums":
            out = self._on_sums(open_envelope(env, EncryptedBinSums, "binning step 2"))
            self._state = _WAIT_KEPT
            return [self.send(self.peer, out)]
        if self._state == _WAIT_KEPT and env.kind == "CentreKept":
            msg = open_envelope(env, CentreKept, "binning step 4")
            extra = [c for c in msg.columns if c not in self.centre_passed_iv]
            if extra:
                raise self._fail(f"centre keeps columns that did not pass the IV threshold: {extra}")
            self.kept_centre = list(msg.columns)
            self._state = _DONE
            return []
        raise self._fail(f"unexpected {env.kind} at this step of binning")

    # -- step 3 ------------------------------------------------------------------------------
    def decrypt_counts(self, msg: EncryptedBinSums) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """Per centre column ``(name, kind, fine events, fine counts)``, checked for consistency."""
        assert self._sk is not None
        k = len(msg.columns)
        if len(msg.kinds) != k or msg.n_bins.shape != (k,) or int(msg.n_bins.sum()) != msg.counts.size:
            raise self._fail("binning step 2: column, kind and bin-count arrays do not match")
        if len(set(msg.columns)) != k:
            raise self._fail("binning step 2: a centre column name appears twice")
        try:
            enc = EncryptedVector.from_bytes(self._sk.public_key, msg.sums)
        except PaillierError as exc:
            raise self._fail(f"binning step 2: bad encrypted sums: {exc}") from None
        if len(enc) != msg.counts.size:
            raise self._fail(f"binning step 2: {len(enc)} sums for {msg.counts.size} bins")
        counts = msg.counts.astype(np.int64)
        if msg.mask_low.shape != counts.shape:
            raise self._fail(f"binning step 2: {msg.mask_low.size} masks for {counts.size} bins")
        # each sum arrives as sum + R_b; only its low w_b bits are readable (R_b's low bits are given)
        windows = window_bits(counts)
        raw = self._sk.decrypt_raw(enc.ciphertexts)
        events = np.array(
            [(int(d) - int(m)) & ((1 << int(w)) - 1) for d, m, w in zip(raw, msg.mask_low.tolist(), windows.tolist())],
            dtype=np.int64,
        )
        n, n_events = len(self.y), int(self.y.sum())
        offs = np.concatenate([[0], np.cumsum(msg.n_bins)])
        out = []
        for j, col in enumerate(msg.columns):
            e, c = events[offs[j] : offs[j + 1]], counts[offs[j] : offs[j + 1]]
            if msg.kinds[j] not in ("numeric", "categorical"):
                raise self._fail(f"binning step 2: column {col!r} has unknown kind {msg.kinds[j]!r}")
            if (c < 0).any() or (e < 0).any() or (e > c).any():
                raise self._fail(f"binning step 2: column {col!r}: event counts outside 0..bin count (tampered)")
            if int(c.sum()) != n or int(e.sum()) != n_events:
                raise self._fail(
                    f"binning step 2: column {col!r}: bins hold {int(c.sum())} rows / {int(e.sum())} events, "
                    f"expected {n} / {n_events} (tampered or misaligned)"
                )
            out.append((col, msg.kinds[j], e, c))
        return out

    def _on_sums(self, msg: EncryptedBinSums) -> BinningResult:
        self.centre_fine = self.decrypt_counts(msg)
        return self._select(self.centre_fine)

    def _select(self, fine: list[tuple[str, str, np.ndarray, np.ndarray]]) -> BinningResult:
        """Merge, check and select from the centre's decrypted fine counts (deterministic, so a
        restored party rebuilds the same result from the counts it kept)."""
        st = self.config.merge_settings()
        for col, kind, e, c in fine:
            cw = merge_column(col, kind, e, c, st)
            # on the fine bins: merging pools pure bins, which would hide a perfect separator
            fine_iv = float(woe_iv(e, c - e)[1].sum())
            if max(fine_iv, cw.iv) > self.config.max_iv:
                raise self._fail(
                    f"credit centre column {col!r} has IV {fine_iv:.2f} on its fine bins, above max_iv "
                    f"{self.config.max_iv}: "
                    "it predicts defaults too well to be public data (label-derived?); the centre must drop it"
                )
            self.centre[col] = cw
        self.centre_passed_iv = select_by_iv({c: w.iv for c, w in self.centre.items()}, self.config.min_iv)
        ranked_own = select_by_iv({c: w.iv for c, w in self.own.items()}, self.config.min_iv)
        self.kept_own, self.dropped_own = drop_correlated(
            self.transform_own(ranked_own), ranked_own, self.config.max_corr
        )
        kept = self.centre_passed_iv
        cw_list = [self.centre[c] for c in kept]
        return BinningResult(
            kept=kept,
            n_fine=np.array([w.group.size for w in cw_list], dtype=np.int32),
            n_final=np.array([w.woe.size for w in cw_list], dtype=np.int32),
            groups=np.concatenate([w.group for w in cw_list]).astype(np.int32) if cw_list else np.zeros(0, np.int32),
            woe=np.concatenate([w.woe for w in cw_list]) if cw_list else np.zeros(0),
        )

    # -- persistence between relay steps (node-local: holds the private key) ----------------
    def to_state(self) -> bytes:
        """What a node keeps between two steps: the step, the private key and the decrypted
        fine counts; everything else is rebuilt from the node's own data."""
        fine = self.centre_fine
        return wire.encode(
            BankState(
                version=STATE_VERSION,
                name=self.name,
                peer=self.peer,
                data_digest=self._digest,
                step=self._state,
                private_key=self._sk.to_bytes() if self._sk is not None else b"",
                columns=[f[0] for f in fine],
                kinds=[f[1] for f in fine],
                n_bins=np.array([f[2].size for f in fine], dtype=np.int32),
                events=np.concatenate([f[2] for f in fine]) if fine else np.zeros(0, np.int64),
                counts=np.concatenate([f[3] for f in fine]) if fine else np.zeros(0, np.int64),
                kept_centre=list(self.kept_centre),
            )
        )

    @classmethod
    def from_state(
        cls,
        state: bytes,
        X: np.ndarray,
        names: list[str],
        y: np.ndarray,
        config: BinningConfig,
        *,
        categorical: dict[str, int] | None = None,
    ) -> BinningBank:
        """The party again from :meth:`to_state` bytes and the same data (refused on other data)."""
        s = decode_state(state, BankState, STATE_VERSION, "bank")
        sk = PrivateKey.from_bytes(s.private_key, insecure_test_key=config.insecure_test_key) if s.private_key else None
        party = cls(s.name, s.peer, X, names, y, config, categorical=categorical, private_key=sk)
        if party._digest != s.data_digest:
            raise party._fail("the data given to from_state is not the data this party was built with")
        offs = np.concatenate([[0], np.cumsum(s.n_bins)]).astype(np.int64)
        fine = [
            (c, k, s.events[offs[j] : offs[j + 1]], s.counts[offs[j] : offs[j + 1]])
            for j, (c, k) in enumerate(zip(s.columns, s.kinds))
        ]
        if fine:
            party.centre_fine = fine
            party._select(fine)
        party.kept_centre = list(s.kept_centre)
        party._state = s.step
        return party

    # -- outputs -----------------------------------------------------------------------------
    def transform_own(self, columns: list[str] | None = None, X: np.ndarray | None = None) -> np.ndarray:
        """WOE-encoded own columns (default: the kept ones) of ``X`` (default: the binned rows)."""
        cols = self.kept_own if columns is None else columns
        return woe_encode(cols, self.names, self.codes, self.bins, self.own, X)

    def iv_report(self) -> list[dict]:
        """Every column of both parties: party, column, kind, IV, final bins, kept and why not."""
        rows = []
        for party, table, kept, dropped in (
            ("bank", self.own, self.kept_own, self.dropped_own),
            ("credit_centre", self.centre, self.kept_centre, {}),
        ):
            for col, w in sorted(table.items(), key=lambda kv: -kv[1].iv):
                if col in kept:
                    why = ""
                elif w.iv < self.config.min_iv:
                    why = f"IV below {self.config.min_iv}"
                elif col in dropped:
                    why = f"correlated with {dropped[col]}"
                else:
                    why = "correlated with a kept column (dropped by its owner)"
                rows.append(
                    {
                        "party": party,
                        "column": col,
                        "kind": w.kind,
                        "iv": round(w.iv, 6),
                        "bins": int(w.woe.size),
                        "kept": col in kept,
                        "reason": why,
                    }
                )
        return rows

    @property
    def column_bins(self) -> dict[str, ColumnBins]:
        return {cb.name: cb for cb in self.bins}
