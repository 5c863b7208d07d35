"""This process's private-key objects, reused across restarts of the same party.

Pure optimisation: a restarted party rebuilds its key from state bytes every step, and the CRT
obfuscator tables cost ~1 s to build at 2048 bits. When the process survives between steps
(Flower simulation actors, a long-lived ClientApp) the cached object is reused; the cache is
keyed by a hash of the private key bytes themselves, so only a caller that already holds the
key can get it back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from protocols.paillier import PrivateKey

_KEY_CACHE: OrderedDict[str, PrivateKey] = OrderedDict()
_KEY_CACHE_SIZE = 4


def cached_private_key(data: bytes, insecure_test_key: bool) -> PrivateKey:
    """The private key in ``data``, reusing this process's key object (and its fixed-base tables)."""
    tag = hashlib.sha256(data + bytes([insecure_test_key])).hexdigest()
    key = _KEY_CACHE.get(tag)
    if key is None:
        key = PrivateKey.from_bytes(data, insecure_test_key=insecure_test_key)
        _KEY_CACHE[tag] = key
        while len(_KEY_CACHE) > _KEY_CACHE_SIZE:
            _KEY_CACHE.popitem(last=False)
    else:
        _KEY_CACHE.move_to_end(tag)
    return key
