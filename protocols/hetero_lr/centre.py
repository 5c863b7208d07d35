"""The credit centre (FATE's host): public features only.

It never sees labels, residuals or the bank's gradient: per batch it sends
``Enc_c(0.25 u_c)`` under its own key, forms ``Enc_b(X_c^T (s d) + R_c)`` from the bank's
encrypted residuals, folds the epoch's Taylor-loss cross term into one ciphertext for the bank,
and decrypts the bank's masked gradient. Early stopping is the bank's decision; the centre keeps
its weights from the epochs the bank marks ``improved``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from protocols.common.inputs import as_features
from protocols.common.party import Envelope
from protocols.hetero_lr import kernels, messages
from protocols.hetero_lr._base import LRTrainingParty
from protocols.hetero_lr.scales import loss_window_bits
from protocols.paillier import EncryptedVector

log = logging.getLogger(__name__)


class CentreLR(LRTrainingParty):
    """The host: public features only; never sees labels, residuals or the bank's gradient.

    Built with ``CentreLR(name, peer, X_train, config, X_val=..., on_epoch=...)``; restarted
    with ``CentreLR.from_state(state, X_train, X_val=...)``.
    """

    role = messages.CENTRE
    peer_role = messages.BANK

    # -- phase A --------------------------------------------------------------------------
    def _send_partials(self) -> list[Envelope]:
        r = self.s.round
        rows = self._batch(r)
        sk = self._own_key
        scores = b""
        if rows is not None:
            if r % self._nb == 0:
                self.s.loss_acc = b""
                self.s.epoch_started = time.time()
            u = self._partial_scores(self.X[rows], "batch")
            scores = sk.encrypt(self.codecs.centre_residual.encode(0.25 * u)).to_bytes()
        self.s.phase = "partials_sent"
        msg = messages.CentrePartials(round=r, key_fingerprint=sk.public_key.fingerprint, scores=scores)
        return [self.send(self.peer, msg)]

    # -- phase B --------------------------------------------------------------------------
    def _quadratic_term(self, u: np.ndarray) -> np.ndarray:
        """``0.125 u_c^2`` per row at the loss scale 2^(fx+fd), rounded: the centre's own loss part."""
        return np.rint(np.ldexp(0.125 * u * u, self.config.frac_bits_x + self.config.frac_bits_d))

    def _cross_loss(self, enc_sd: EncryptedVector, enc_s: EncryptedVector | None, u: np.ndarray) -> EncryptedVector:
        """``Enc_b(sum s u_c d_bank + 0.125 sum s u_c^2)`` at scale 2^(fx+fd[+fs]) (not rerandomised).

        Without weights one multi-exponentiation over ``Enc(d_bank)`` plus the quadratic sum in
        the clear; with weights the quadratic term is weighted by ``Enc(s)`` in the same product.
        """
        u_int = self.codecs.centre_scores.encode(u)
        quad = self._quadratic_term(u)
        if enc_s is None:
            return enc_sd.dot(u_int, workers=1).add_plain(int(quad.sum()))
        if np.abs(quad).max(initial=0) >= 2.0**62:
            raise self._fail("partial scores too large for the weighted loss term: training diverged")
        exps = np.concatenate([u_int, quad.astype(np.int64)])
        return enc_sd.concat(enc_s).dot(exps, workers=1)

    def _gradient_and_loss(
        self, enc_d: EncryptedVector, enc_s: EncryptedVector | None, rows: np.ndarray
    ) -> tuple[EncryptedVector, EncryptedVector]:
        """(``Enc_b(X_c^T (s d))``, the batch's loss cross term) from the bank's encrypted residuals."""
        X = self.X_int[rows]
        u = self._partial_scores(self.X[rows], "batch")
        c = self.codecs.centre_residual.encode(0.25 * u)
        if enc_s is None:
            # one multi-exponentiation: [X_c | u_c] over Enc(d_bank); the centre's own term in the clear
            u_int = self.codecs.centre_scores.encode(u)
            out = enc_d.dot(np.hstack([X, u_int[:, None]]))
            grad = out[:-1].add_plain(kernels.exact_matvec(X, c))
            return grad, out[-1:].add_plain(int(self._quadratic_term(u).sum()))
        # Enc(s d) = Enc(s d_bank) * Enc(s)^c row by row (the centre never learns s)
        enc_sd = enc_d + enc_s.mul_plain(c, workers=1)
        return enc_sd.dot(X), self._cross_loss(enc_d, enc_s, u)

    def _accumulate_loss(self, term: EncryptedVector) -> EncryptedVector:
        """The epoch's loss cross term so far (kept in the state between batches) plus ``term``."""
        if not self.s.loss_acc:
            return term
        return EncryptedVector.from_bytes(term.public_key, self.s.loss_acc, validate=False) + term

    def _on_partials(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.BankPartials)
        r = self.s.round
        rows = self._batch(r)
        pk = self._peer_key
        weighted = self.config.weighted
        record_val = self._is_record_round(r) and self.n_val > 0
        if rows is not None or record_val:
            self._check_fingerprint(msg, pk)
        n = 0 if rows is None else len(rows)
        enc_d = self._cts(pk, msg.residual, n, "bank residuals")
        enc_s = self._cts(pk, msg.sample_weights, n if weighted else 0, "bank sample weights")
        nv = self.n_val if record_val else 0
        enc_vd = self._cts(pk, msg.val_residual, nv, "bank validation residuals")
        enc_vs = self._cts(pk, msg.val_sample_weights, nv if weighted else 0, "bank validation sample weights")
        gradient = train_loss = val_loss = b""
        if rows is not None:
            grad, loss = self._gradient_and_loss(enc_d, enc_s if weighted else None, rows)
            gradient = self._mask_gradient(grad, n).to_bytes()
            acc = self._accumulate_loss(loss)
            if self._is_last_batch_of_epoch(r):
                train_loss = kernels.high_mask(acc, loss_window_bits(self.n_train, self.config)).to_bytes()
                self.s.loss_acc = b""
            else:
                self.s.loss_acc = acc.to_bytes(be_secure=False)  # node-local state: never sent as is
        if record_val and self.X_val is not None:
            u = self._partial_scores(self.X_val, "validation")
            cross = self._cross_loss(enc_vd, enc_vs if weighted else None, u)
            val_loss = kernels.high_mask(cross, loss_window_bits(self.n_val, self.config)).to_bytes()
        self.s.phase = "gradient_sent"
        reply = messages.CentreMaskedGradient(
            round=r, key_fingerprint=pk.fingerprint, gradient=gradient, train_loss=train_loss, val_loss=val_loss
        )
        return [self.send(self.peer, reply)]

    # -- phase C --------------------------------------------------------------------------
    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.BankMaskedGradient)
        rows = self._batch(self.s.round)
        sk = self._own_key
        n_grad = 0 if rows is None else self.s.peer_features + 1
        if n_grad:
            self._check_fingerprint(msg, sk.public_key)
        masked = self._cts(sk.public_key, msg.gradient, n_grad, "bank masked gradient")
        values = self._decrypt_window(masked, len(rows)) if n_grad and rows is not None else []
        self.s.phase = "plain_sent"
        return [self.send(self.peer, messages.CentreMaskedPlain(round=self.s.round, values=values))]

    # -- phase D --------------------------------------------------------------------------
    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        msg = self._open_current(env, messages.BankMaskedPlain)
        r = self.s.round
        rows = self._batch(r)
        record = self._is_record_round(r)
        if (msg.improved or msg.finish) and not record:
            raise self._fail("bank sent training control outside an epoch boundary")
        if record:
            if msg.improved:
                self.s.best_weights = self.s.weights.copy()
            epoch = r // self._nb - 1
            self._emit({"epoch": epoch, "seconds": time.time() - self.s.epoch_started, "improved": bool(msg.improved)})
        if msg.finish:
            self._settle_weights()
            self.s.phase = "done"
            log.info("%s %r finished after %d epochs", self.role, self.name, len(self.s.history))
            return []
        if rows is None:
            raise self._fail("bank did not finish after the last epoch")
        return self._update_and_continue(msg.values, rows)

    # -- results --------------------------------------------------------------------------
    def _model_details(self, weights: np.ndarray) -> dict[str, Any]:
        return {"coef": weights.tolist()}

    def partial_scores(self, X_new: np.ndarray) -> np.ndarray:
        """``X_new @ w_centre`` (local; leaves the node only through the scoring protocol)."""
        X_new = as_features(X_new, f"credit centre {self.name!r}", "X_new", self.n_weights)
        return np.asarray(X_new @ self.s.weights)
