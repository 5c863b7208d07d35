"""Security and speed parameters of the Paillier package, in one place with the reasons for them.

See ``docs/protocols/paillier.md`` ("Parameters and why") for the security argument behind the
DJN exponent length and the memory/speed trade-off of the fixed-base window.
"""

from __future__ import annotations

__all__ = ["DJN_EXPONENT_BITS", "MIN_DJN_EXPONENT_BITS", "MIN_KEY_BITS", "TABLE_WINDOW", "default_window"]

MIN_KEY_BITS = 2048
DJN_EXPONENT_BITS = 256  # short exponent for hs^a; 2x the 128-bit security level (see docs)
MIN_DJN_EXPONENT_BITS = 224  # 2x the 112-bit level NIST assigns to 2048-bit factoring
TABLE_WINDOW = 12  # fixed-base window: 22 multiplications per 256-bit exponent, ~23 MB/table at n^2
SMALL_KEY_WINDOW = 8  # test keys (< 2048 bits): cheap tables, fast test start-up


def default_window(key_bits: int) -> int:
    """The fixed-base table window for a key of ``key_bits`` bits (small tables for test keys)."""
    return TABLE_WINDOW if key_bits >= MIN_KEY_BITS - 1 else SMALL_KEY_WINDOW
