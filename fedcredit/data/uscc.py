"""Unified social credit codes (统一社会信用代码, GB 32100-2015).

Every Chinese enterprise is keyed by an 18-character USCC; it is the join key between the
credit centre and the banks, so it is what PSI hashes. The layout is:

    pos 1      registration authority code   (1-9, A-G, Y)
    pos 2      entity type code             (1-9, A-G, Y; meaning depends on pos 1)
    pos 3-8    administrative division code (6 digits)
    pos 9-17   organisation code (9 chars of the 31-char alphabet; GB 11714 has its own
               check character at pos 17, which we generate but do not enforce: the
               national standard only mandates the final USCC check character)
    pos 18     check character over pos 1-17

The alphabet has 31 characters: 0-9 and A-Z without I, O, Z, S, V. The check character is
``c18 = (31 - sum(value(c_i) * w_i) mod 31) mod 31`` with weights ``w_i = 3^(i-1) mod 31``.

The check rules themselves live once, in :mod:`protocols.psi.ids` (PSI must check ids and
protocols may not import the framework); this module adds generation, the strict ``validate``
API and bulk helpers on top (pure Python + numpy).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from protocols.psi.ids import (
    USCC_ALPHABET,
    USCC_WEIGHTS,
    alphabet_values,
    check_values,
    normalise_id,
    uscc_check_character,
    uscc_error,
    uscc_mask,
)

ALPHABET = USCC_ALPHABET
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
WEIGHTS = USCC_WEIGHTS  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28

# Registration authority (pos 1) and, per authority, allowed entity types (pos 2). The keys are
# the authorities the check accepts (``protocols.psi.ids.USCC_AUTHORITIES``; a test keeps them equal).
ENTITY_TYPES: dict[str, str] = {
    "1": "129",  # organisation establishment (机构编制): government, public institutions, other
    "5": "1239",  # civil affairs: social groups, foundations, private non-enterprise units, other
    "9": "123",  # industry & commerce (工商): enterprises, individual businesses, farmers' cooperatives
    "Y": "1",  # other
}

# Organisation-code check (GB 11714-1997), used only when generating realistic codes.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class InvalidUSCC(ValueError):
    """Raised when a string is not a valid unified social credit code."""


def check_character(first17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters."""
    try:
        return uscc_check_character(first17)
    except ValueError as exc:
        raise InvalidUSCC(str(exc)) from None


def normalise(code: str) -> str:
    """Canonical form used everywhere (and hashed by PSI): stripped, upper case."""
    return code.strip().upper()


def validation_error(code: object) -> str | None:
    """Why ``code`` is not a valid USCC, or ``None`` if it is. Cheap: no exceptions."""
    if not isinstance(code, str):
        return f"not a string: {code!r}"
    return uscc_error(normalise(code))


def is_valid(code: object) -> bool:
    return validation_error(code) is None


def validate(code: str) -> str:
    """Return the normalised code or raise :class:`InvalidUSCC` naming the problem."""
    err = validation_error(code)
    if err is not None:
        raise InvalidUSCC(f"invalid USCC {code!r}: {err}")
    return normalise(code)


def _org_code(body8: str) -> str:
    total = sum(_ORG_ALPHABET.index(ch) * w for ch, w in zip(body8, _ORG_WEIGHTS))
    c9 = 11 - total % 11
    return body8 + ("X" if c9 == 10 else "0" if c9 == 11 else str(c9))


# Prefecture-level division codes used by the synthetic generator (a province's cities).
DIVISIONS = (
    "330100",
    "330200",
    "330300",
    "330400",
    "330500",
    "330600",
    "330700",
    "330800",
    "330900",
    "331000",
    "331100",
)


def from_index(i: int, *, division: str = "330100", authority: str = "9", entity: str = "1") -> str:
    """Deterministic valid USCC for an integer ``i`` (0 <= i < 10^8).

    Used to give bundled or synthetic records stable, valid enterprise ids: the organisation
    code is the 8-digit index plus its GB 11714 check character.
    """
    if not 0 <= i < 10**8:
        raise ValueError("index out of range for an 8-digit organisation code body")
    org = _org_code(f"{i:08d}")
    first17 = authority + entity + division + org
    return first17 + check_character(first17)


def generate(n: int, rng: np.random.Generator, *, divisions: Iterable[str] = DIVISIONS) -> list[str]:
    """``n`` distinct valid USCCs of industry & commerce enterprises, random but reproducible."""
    divs = list(divisions)
    # distinct organisation bodies: sample without replacement from 10^8
    bodies = rng.choice(10**8, size=n, replace=False) if n < 5_000_000 else _distinct_large(n, rng)
    div_idx = rng.integers(0, len(divs), size=n)
    return [from_index(int(b), division=divs[d]) for b, d in zip(bodies, div_idx)]


def _distinct_large(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.unique(rng.integers(0, 10**8, size=int(n * 1.1)))
    while out.size < n:
        out = np.unique(np.concatenate([out, rng.integers(0, 10**8, size=n)]))
    return rng.permutation(out)[:n]


def corrupt_check_character(code: str) -> str:
    """Return ``code`` with a wrong check character (for tests and bad-input demos)."""
    c = normalise(code)
    wrong = ALPHABET[(_VALUE[c[17]] + 1) % 31]
    return c[:17] + wrong


# --- vectorised helpers (bulk validation and generation; same rules as the functions above) ---


def valid_mask(codes: Iterable[object]) -> np.ndarray:
    """Boolean array: which of ``codes`` are valid USCCs (after :func:`normalise`).

    Agrees with :func:`is_valid` element by element, but runs in numpy so loaders can check a
    million ids in well under a second. Use :func:`validation_error` on the failures for the
    reason.
    """
    return uscc_mask([normalise_id(c) for c in codes])


_ORG_W_NP = np.array(_ORG_WEIGHTS, dtype=np.int64)
_ALPHA_BYTES = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)


def from_indices(
    indices: np.ndarray, division_idx: np.ndarray | None = None, *, divisions: Iterable[str] = DIVISIONS
) -> np.ndarray:
    """Vectorised :func:`from_index`: one valid USCC (numpy unicode array) per integer index.

    ``division_idx[i]`` picks the division of code ``i`` from ``divisions`` (default: the first).
    Identical output to ``from_index(i, division=divisions[d])`` for every element.
    """
    idx = np.asarray(indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= 10**8):
        raise ValueError("index out of range for an 8-digit organisation code body")
    divs = list(divisions)
    d_idx = np.zeros(idx.size, dtype=np.int64) if division_idx is None else np.asarray(division_idx, np.int64).ravel()
    n = idx.size
    m = np.empty((n, 18), dtype=np.uint8)
    m[:, 0] = ord("9")
    m[:, 1] = ord("1")
    div_bytes = np.frombuffer("".join(divs).encode(), dtype=np.uint8).reshape(-1, 6)
    m[:, 2:8] = div_bytes[d_idx]
    digits = (idx[:, None] // 10 ** np.arange(7, -1, -1, dtype=np.int64)) % 10  # 8 digits, most significant first
    m[:, 8:16] = digits + ord("0")
    c9 = 11 - (digits * _ORG_W_NP).sum(axis=1) % 11
    m[:, 16] = np.where(c9 == 10, ord("X"), np.where(c9 == 11, ord("0"), c9 + ord("0")))
    m[:, 17] = _ALPHA_BYTES[check_values(alphabet_values(m[:, :17]))]
    return np.frombuffer(m.tobytes(), dtype="S18").astype("U18")
