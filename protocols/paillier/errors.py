"""The one exception of the Paillier package (a ``ValueError``, so callers may catch either)."""

from __future__ import annotations

__all__ = ["PaillierError"]


class PaillierError(ValueError):
    """Bad key, ciphertext or plaintext: the message says which and why."""
