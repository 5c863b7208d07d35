"""The bank (FATE's guest): labels, its standardised features and the intercept.

Per batch the bank sends ``Enc_b(s (0.25 u_b - 0.5 y))`` (its residual part, under its own key),
forms the centre-keyed ``Enc_c(X_b^T (s d) + R_b)`` from the centre's encrypted partial scores,
decrypts the centre's masked gradient, and decides, from the decrypted loss aggregates, when
an epoch improved and when training ends (the centre follows its ``improved``/``finish``).
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from protocols.common.inputs import as_features, as_labels
from protocols.common.party import Envelope
from protocols.hetero_lr import kernels, messages
from protocols.hetero_lr._base import LRTrainingParty
from protocols.hetero_lr.config import HeteroLRConfig
from protocols.hetero_lr.memo import FrozenMemo, freeze_derived, is_frozen
from protocols.hetero_lr.scales import (
    FRAC_BITS_S,
    SAMPLE_WEIGHTS,
    gradient_scale_bits,
    loss_window_bits,
)
from protocols.hetero_lr.schedule import balanced_class_weights
from protocols.paillier import EncryptedVector

log = logging.getLogger(__name__)

_LOG2 = math.log(2.0)


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


@dataclass(frozen=True)
class _BankData:
    """What the bank derives from its inputs before the shared checks (memoised per frozen data)."""

    X: np.ndarray  # training rows with the intercept column
    X_val: np.ndarray | None
    y: np.ndarray  # labels in {-1, +1}
    y_val: np.ndarray | None
    n_raw: int
    class_weights: dict[int, float] | None
    s_int: np.ndarray | None
    s_val_int: np.ndarray | None


def _bank_data(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    config: HeteroLRConfig,
) -> _BankData:
    """Check the bank's inputs and derive its arrays: O(rows), once per frozen data in a process."""
    who = f"{messages.BANK} {name!r}"
    X_train = as_features(X_train, who, "X_train")
    X_val = as_features(X_val, who, "X_val", X_train.shape[1])
    y = as_labels(y_train, X_train.shape[0], who, "y_train", signed=True)
    if (X_val is None) != (y_val is None):
        raise ValueError(f"{who}: give both X_val and y_val, or neither")
    y_v = as_labels(y_val, 0 if X_val is None else X_val.shape[0], who, "y_val", signed=True)
    cw = s_int = s_val_int = None
    if config.weighted:
        cw = balanced_class_weights((y > 0).astype(int))
        s_int = SAMPLE_WEIGHTS.encode(np.where(y > 0, cw[1], cw[0]))
        if y_v is not None:
            s_val_int = SAMPLE_WEIGHTS.encode(np.where(y_v > 0, cw[1], cw[0]))
    X_a, X_val_a = _with_intercept(X_train), None if X_val is None else _with_intercept(X_val)
    if is_frozen(X_train) and is_frozen(X_val):  # shared through the memo: nobody may write to them
        f = freeze_derived
        return _BankData(f(X_a), f(X_val_a), f(y), f(y_v), X_train.shape[1], cw, f(s_int), f(s_val_int))  # type: ignore[arg-type]
    return _BankData(X_a, X_val_a, y, y_v, int(X_train.shape[1]), cw, s_int, s_val_int)


_BANK_DATA: FrozenMemo[_BankData] = FrozenMemo(maxsize=2)


class BankLR(LRTrainingParty):
    """The guest: labels, its standardised features (the intercept column is added here).

    Restarted with ``BankLR.from_state(state, X_train, y_train, X_val=..., y_val=...)``.
    """

    role = messages.BANK
    peer_role = messages.CENTRE

    def __init__(
        self,
        name: str,
        peer: str,
        X_train: np.ndarray,
        y_train: np.ndarray,
        config: HeteroLRConfig,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        d = _BANK_DATA.get(
            (name, config.weighted),
            (X_train, y_train, X_val, y_val),
            lambda: _bank_data(name, X_train, y_train, X_val, y_val, config),
        )
        self.n_raw = d.n_raw
        self.y, self.y_val = d.y, d.y_val
        self.class_weights = d.class_weights
        self.s_int, self.s_val_int = d.s_int, d.s_val_int  # fixed-point class weight of each row
        super().__init__(name, peer, d.X, config, X_val=d.X_val, on_epoch=on_epoch)

    def _digest_arrays(self) -> tuple[np.ndarray | None, ...]:
        return (self.X, self.X_val, self.y, self.y_val)

    def _raw_features(self) -> int:
        return self.n_raw

    def _validation_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(validation rows with the intercept column, their labels), or None without validation."""
        if not self.n_val or self.X_val is None or self.y_val is None:
            return None
        return self.X_val, self.y_val

    def _l2_mask(self) -> np.ndarray:
        m = np.ones(self.n_weights)
        m[-1] = 0.0  # no penalty on the intercept
        return m

    # -- local computations --------------------------------------------------------------
    def _residuals(self, X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(u_bank, fixed-point ``0.25 u_bank - 0.5 y``) for rows ``X`` at the current weights."""
        u = self._partial_scores(X, what)
        return u, self.codecs.bank_residual.encode(0.25 * u - 0.5 * y)

    def _own_loss(self, u: np.ndarray, y: np.ndarray, s_int: np.ndarray | None) -> float:
        terms = _LOG2 - 0.5 * y * u + 0.125 * u * u
        if s_int is not None:
            terms = terms * (s_int / 2.0**FRAC_BITS_S)
        return float(terms.sum())

    def _encrypt_residuals(self, d: np.ndarray, s: np.ndarray | None) -> tuple[bytes, bytes]:
        """``(Enc(s d), Enc(s))`` under our own key; ``(Enc(d), b"")`` without class weights."""
        sk = self._own_key
        if s is None:
            return sk.encrypt(d).to_bytes(), b""
        return sk.encrypt(s * d).to_bytes(), sk.encrypt(s).to_bytes()

    # -- phase A --------------------------------------------------------------------------
    def _send_partials(self) -> list[Envelope]:
        r = self.s.round
        rows = self._batch(r)
        residual = weights = val_residual = val_weights = b""
        if rows is not None:
            if r % self._nb == 0:
                self.s.own_loss = 0.0
                self.s.epoch_started = time.time()
            u, d = self._residuals(self.X[rows], self.y[rows], "batch")
            s_rows = None if self.s_int is None else self.s_int[rows]
            self.s.own_loss += self._own_loss(u, self.y[rows], s_rows)
            residual, weights = self._encrypt_residuals(d, s_rows)
        val = self._validation_set() if self._is_record_round(r) else None
        if val is not None:
            _, d = self._residuals(*val, "validation")
            val_residual, val_weights = self._encrypt_residuals(d, self.s_val_int)
        self.s.phase = "partials_sent"
        msg = messages.BankPartials(
            round=r,
            key_fingerprint=self._own_key.public_key.fingerprint,
            residual=residual,
            sample_weights=weights,
            val_residual=val_residual,
            val_sample_weights=val_weights,
        )
        return [self.send(self.peer, msg)]

    # -- phase B --------------------------------------------------------------------------
    def _gradient_for_centre(self, enc_c: EncryptedVector, rows: np.ndarray) -> EncryptedVector:
        """``Enc_c(X_b^T (s d))``: ``X^T Enc(0.25 u_c)`` plus the bank's own term ``X^T d_b`` in the clear.

        With class weights the rows are grouped by weight (two groups): each group's product is
        raised to its weight once, instead of once per row.
        """
        _, d = self._residuals(self.X[rows], self.y[rows], "batch")
        X = self.X_int[rows]
        if self.s_int is None:
            return enc_c.dot(X).add_plain(kernels.exact_matvec(X, d))
        s_rows = self.s_int[rows]
        groups = [(int(v), np.flatnonzero(s_rows == v)) for v in np.unique(s_rows)]
        enc = reduce(operator.add, (enc_c[idx].dot(X[idx]).mul_plain(w, workers=1) for w, idx in groups))
        plain = [0] * X.shape[1]
        for w, idx in groups:
            plain = [a + w * b for a, b in zip(plain, kernels.exact_matvec(X[idx], d[idx]))]
        return enc.add_plain(plain)

    def _on_partials(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.CentrePartials)
        rows = self._batch(self.s.round)
        pk = self._peer_key
        if rows is None:
            if msg.scores:
                raise self._fail("centre sent partial scores for a round without a batch")
            gradient = b""
        else:
            self._check_fingerprint(msg, pk)
            enc_c = self._cts(pk, msg.scores, len(rows), "centre partial scores")
            gradient = self._mask_gradient(self._gradient_for_centre(enc_c, rows), len(rows)).to_bytes()
        self.s.phase = "gradient_sent"
        reply = messages.BankMaskedGradient(round=self.s.round, key_fingerprint=pk.fingerprint, gradient=gradient)
        return [self.send(self.peer, reply)]

    # -- phase C --------------------------------------------------------------------------
    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.CentreMaskedGradient)
        r = self.s.round
        rows = self._batch(r)
        sk = self._own_key
        pk = sk.public_key
        if msg.gradient or msg.train_loss or msg.val_loss:
            self._check_fingerprint(msg, pk)
        n_grad = 0 if rows is None else self.s.peer_features
        masked = self._cts(pk, msg.gradient, n_grad, "centre masked gradient")
        if self._is_last_batch_of_epoch(r):
            cross = self._decrypt_aggregate(self._cts(pk, msg.train_loss, 1, "train loss"), self.n_train)
            self.s.pending_train_loss = (self.s.own_loss + cross) / self.n_train
        elif msg.train_loss:
            raise self._fail("centre sent a training-loss ciphertext outside an epoch's last batch")
        val_loss = None
        val = self._validation_set() if self._is_record_round(r) else None
        if val is not None:
            cross = self._decrypt_aggregate(self._cts(pk, msg.val_loss, 1, "validation loss"), self.n_val)
            X_val, y_val = val
            val_loss = (self._own_loss(X_val @ self.s.weights, y_val, self.s_val_int) + cross) / self.n_val
        elif msg.val_loss:
            raise self._fail("centre sent a validation-loss ciphertext in a round without validation")
        improved = finish = False
        if self._is_record_round(r):
            improved, finish = self._record_epoch(r // self._nb - 1, val_loss)
        if finish:
            self._settle_weights()  # the centre's reply to this round is still in flight: accept it, then be done
            self.s.phase = "finishing"
            return [self.send(self.peer, messages.BankMaskedPlain(round=r, values=[], improved=improved, finish=True))]
        values = self._decrypt_window(masked, len(rows)) if n_grad and rows is not None else []
        self.s.phase = "plain_sent"
        return [self.send(self.peer, messages.BankMaskedPlain(round=r, values=values, improved=improved, finish=False))]

    def _decrypt_aggregate(self, vec: EncryptedVector, n_rows: int) -> float:
        """A loss aggregate from the centre: only its low window is readable (the centre masks the rest).

        The window is exactly the honest range (``loss_window_bits``), so every decryption reads
        as *some* in-range value: a range check here could not catch anything, and there is none.
        Keeping the window that tight is what bounds a dishonest bank (threat-model.md); a wrong
        or corrupted loss ciphertext gives a wrong loss value, not an error (the key fingerprint
        of the same message is checked, and message integrity is the relay channel's job).
        """
        scale_bits = gradient_scale_bits(self.config)
        sk = self._own_key
        (v,) = sk.decrypt(vec)
        bits = loss_window_bits(n_rows, self.config)
        t = kernels.unmask_window(kernels.window(sk.public_key, int(v), bits), 0, bits)
        return t / 2.0**scale_bits

    def _record_epoch(self, epoch: int, val_loss: float | None) -> tuple[bool, bool]:
        cfg = self.config
        improved = False
        if val_loss is None:
            improved = True  # without validation the latest weights are the ones to keep
            self.s.wait = 0
        elif self.s.best_val is None or val_loss < self.s.best_val - cfg.early_stopping_tol:
            improved = True
            self.s.best_val = float(val_loss)
            self.s.wait = 0
        else:
            self.s.wait += 1
        if improved:
            self.s.best_epoch = epoch
            self.s.best_weights = self.s.weights.copy()
        stop_early = (
            val_loss is not None and cfg.early_stopping_patience > 0 and self.s.wait >= cfg.early_stopping_patience
        )
        finish = epoch >= cfg.epochs - 1 or stop_early
        entry = {
            "epoch": epoch,
            "train_loss": self.s.pending_train_loss,
            "val_loss": None if val_loss is None else float(val_loss),
            "seconds": time.time() - self.s.epoch_started,
            "learning_rate": cfg.learning_rate_at(epoch),
            "improved": improved,
        }
        self.s.pending_train_loss = None
        log.info(
            "bank %r epoch %d: train %s val %s (%s)",
            self.name,
            epoch,
            "-" if entry["train_loss"] is None else f"{entry['train_loss']:.5f}",
            "-" if val_loss is None else f"{val_loss:.5f}",
            "improved" if improved else f"wait {self.s.wait}",
        )
        self._emit(entry)
        if stop_early and epoch < cfg.epochs - 1:
            log.info("bank %r: early stop after epoch %d (best epoch %d)", self.name, epoch, self.s.best_epoch)
        return improved, finish

    def _on_final_plain(self, env: Envelope) -> list[Envelope]:
        self._open_current(env, messages.CentreMaskedPlain)  # the reply to the finishing round, discarded
        self.s.phase = "done"
        log.info("bank %r finished after %d epochs (best epoch %d)", self.name, len(self.s.history), self.s.best_epoch)
        return []

    # -- phase D --------------------------------------------------------------------------
    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.CentreMaskedPlain)
        rows = self._batch(self.s.round)
        if rows is None and msg.values:
            raise self._fail("centre returned gradient values for a round without a batch")
        return self._update_and_continue(msg.values, rows)

    # -- results --------------------------------------------------------------------------
    def _model_details(self, weights: np.ndarray) -> dict[str, Any]:
        return {
            "coef": weights[:-1].tolist(),
            "intercept": float(weights[-1]),
            "best_epoch": self.s.best_epoch,
            "class_weights": self.class_weights,
        }

    def partial_scores(self, X_new: np.ndarray) -> np.ndarray:
        """``X_new @ coef + intercept`` (local)."""
        X_new = as_features(X_new, f"{messages.BANK} {self.name!r}", "X_new", self.n_raw)
        return np.asarray(X_new @ self.s.weights[:-1] + self.s.weights[-1])
