"""CKKS (TenSEAL) aggregation: banks hold the secret key, the coordinator only parameters.

One bank generates a *symmetric-key* CKKS context; the other banks receive its secret key
encrypted to their X25519 keys (:mod:`fedcredit.horizontal.keyshare`). The coordinator gets a
parameters-only context (~90 bytes: no secret, public, relinearisation or Galois keys) that is
enough to deserialise and add ciphertexts but can neither decrypt nor encrypt.

Sizing: additions need no multiplicative depth, so one 60-bit data prime (plus the special
prime) at N=8192 suffices: a ciphertext of 4096 slots is ~131 KB, i.e. ~8x the float32 bytes of
the values it carries, and the coordinator's sum of 10 x 100k values takes a few tens of ms.

Weighting: bank k encrypts ``[r_k * w_k, r_k]`` with ``r_k = n_k / n_ref`` (``n_ref`` = the
largest bank, public), so the decrypted sum gives the sample-weighted average
``sum r_k w_k / sum r_k`` and magnitudes stay near the weights' (no wrap-around).

Mismatched contexts are caught three ways, each with an error naming the bank: the parameter
fingerprint (hash of the parameters-only context) announced at key generation, the key
fingerprint every upload carries, and SEAL's own check when a ciphertext is loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from fedcredit.horizontal.settings import CkksSettings

_KEY_FP_DOMAIN = b"fedcredit/ckks-secret-key-fingerprint/v1\x00"


class CkksContextMismatch(ValueError):
    """A ciphertext or context does not belong to this run's CKKS context."""


def params_fingerprint(params_bytes: bytes) -> str:
    return hashlib.sha256(params_bytes).hexdigest()


def key_fingerprint(secret_context_bytes: bytes) -> str:
    """A domain-separated hash of the serialised secret context: equal on every bank holding the
    same key, reveals nothing about the (high-entropy) key itself."""
    return hashlib.sha256(_KEY_FP_DOMAIN + secret_context_bytes).hexdigest()


@dataclass
class SecretCkks:
    """A bank's CKKS state: the TenSEAL context with its secret key plus fingerprints."""

    context: ts.Context
    secret_bytes: bytes
    params_bytes: bytes

    @property
    def key_fp(self) -> str:
        return key_fingerprint(self.secret_bytes)

    @property
    def params_fp(self) -> str:
        return params_fingerprint(self.params_bytes)

    @property
    def slots(self) -> int:
        return _slots(self.context)

    @classmethod
    def generate(cls, settings: CkksSettings) -> SecretCkks:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            settings.poly_modulus_degree,
            coeff_mod_bit_sizes=list(settings.coeff_mod_bit_sizes),
            encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        )
        ctx.global_scale = float(2**settings.scale_bits)
        secret = ctx.serialize(
            save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
        )
        return cls(context=ctx, secret_bytes=secret, params_bytes=params_only(ctx))

    @classmethod
    def load(
        cls, secret_bytes: bytes, expect_key_fp: str | None = None, expect_params_fp: str | None = None
    ) -> SecretCkks:
        """Rebuild from serialised secret context, checking the fingerprints when given."""
        if expect_key_fp is not None and key_fingerprint(secret_bytes) != expect_key_fp:
            raise CkksContextMismatch("the received CKKS secret context does not match the announced key fingerprint")
        try:
            ctx = ts.context_from(secret_bytes)
        except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare RuntimeError/ValueError
            raise CkksContextMismatch(f"cannot load CKKS secret context: {exc}") from None
        if not ctx.is_private():
            raise CkksContextMismatch("the CKKS context holds no secret key")
        me = cls(context=ctx, secret_bytes=secret_bytes, params_bytes=params_only(ctx))
        if expect_params_fp is not None and me.params_fp != expect_params_fp:
            raise CkksContextMismatch(
                "CKKS parameters differ from the run's parameters "
                f"(fingerprint {me.params_fp[:12]} != {expect_params_fp[:12]})"
            )
        return me

    def encrypt(self, vec: np.ndarray) -> list[bytes]:
        """Encrypt a float vector in chunks of ``slots`` values."""
        v = np.asarray(vec, dtype=np.float64).ravel()
        n = self.slots
        return [ts.ckks_vector(self.context, v[i : i + n].tolist()).serialize() for i in range(0, v.size, n)]

    def decrypt(self, chunks: Sequence[bytes], length: int) -> np.ndarray:
        """Decrypt ciphertext chunks produced for a vector of ``length`` values."""
        expected = n_chunks(length, self.slots)
        if len(chunks) != expected:
            raise CkksContextMismatch(f"expected {expected} ciphertexts for {length} values, got {len(chunks)}")
        out = []
        for i, c in enumerate(chunks):
            try:
                out.append(np.asarray(ts.ckks_vector_from(self.context, c).decrypt(), dtype=np.float64))
            except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare RuntimeError/ValueError
                raise CkksContextMismatch(
                    f"ciphertext {i} does not load under this bank's CKKS context: {exc}"
                ) from None
        return np.concatenate(out)[:length]


def params_only(ctx: ts.Context) -> bytes:
    """The context serialised without any key: what the coordinator holds."""
    return ctx.serialize(save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False)


def _slots(ctx: ts.Context) -> int:
    return int(ctx.data.seal_context().first_context_data().parms().poly_modulus_degree()) // 2


def n_chunks(length: int, slots: int) -> int:
    return -(-length // slots)


class CkksAggregator:
    """The coordinator's side: a parameters-only context that sums ciphertexts."""

    def __init__(self, params_bytes: bytes, expect_params_fp: str | None = None) -> None:
        fp = params_fingerprint(params_bytes)
        if expect_params_fp is not None and fp != expect_params_fp:
            raise CkksContextMismatch(
                f"coordinator context fingerprint {fp[:12]} does not match the key holder's {expect_params_fp[:12]}"
            )
        try:
            self.context = ts.context_from(params_bytes)
        except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare RuntimeError/ValueError
            raise CkksContextMismatch(f"cannot load the CKKS parameters context: {exc}") from None
        if self.context.is_private():
            raise CkksContextMismatch("the coordinator was handed a CKKS context WITH a secret key; refusing")
        self.params_fp = fp
        self.slots = _slots(self.context)

    def load(self, party: str, chunks: Sequence[bytes], expected_chunks: int) -> list[ts.CKKSVector]:
        """Deserialise one bank's upload, checking count and that each ciphertext fits the context."""
        if len(chunks) != expected_chunks:
            raise CkksContextMismatch(
                f"{party}: sent {len(chunks)} ciphertexts, expected {expected_chunks} (wrong model shape?)"
            )
        out = []
        for i, c in enumerate(chunks):
            try:
                out.append(ts.ckks_vector_from(self.context, bytes(c)))
            except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare RuntimeError/ValueError
                raise CkksContextMismatch(
                    f"{party}: ciphertext {i} does not match the run's CKKS context "
                    f"({exc}); the bank uses different CKKS parameters"
                ) from None
        return out

    @staticmethod
    def sum(loaded: Sequence[Sequence[ts.CKKSVector]]) -> list[bytes]:
        """Element-wise sum of several banks' loaded ciphertext lists, serialised.

        Adds in place into the first bank's (freshly deserialised) ciphertexts."""
        if not loaded:
            raise ValueError("nothing to sum")
        acc = list(loaded[0])
        for other in loaded[1:]:
            for a, b in zip(acc, other):
                a.add_(b)
        return [a.serialize() for a in acc]


def weighted_plaintext(arrays_flat: np.ndarray, ratio: float) -> np.ndarray:
    """``[ratio * w, ratio]``: what a bank encrypts so the sum yields a weighted average."""
    return np.concatenate([ratio * np.asarray(arrays_flat, dtype=np.float64), [ratio]])


def unweight(aggregate: np.ndarray) -> np.ndarray:
    """Inverse of summing :func:`weighted_plaintext` vectors: divide by the summed weights."""
    total = float(aggregate[-1])
    if not total > 0:
        raise CkksContextMismatch(
            f"decrypted weight sum is {total}; the aggregate was not produced under this bank's key"
        )
    return aggregate[:-1] / total
