"""Test helper: needles from a node's own stored state, in every encoding the protocols use, and a fast
search for them in everything that left a node.

Why from stored state: a needle re-computed by the test (a preprocessor fitted on all rows, labels
in file order) is not what the node holds, so it can never match what the node would leak. Here
the needles are built from what the node itself persisted after PSI and the split (its aligned
rows, its test/validation masks, its fitted preprocessor) applied to its own data.

Encodings (each a contiguous window, so a leaked array or a chunk of one is found wherever it
starts): labels as int8/uint8/bool bytes, int64, float64, float32, packed bits at every bit
offset and JSON text; features (standardised and raw) as float64, float32, fixed-point integers
at each scale in use (``2^frac_bits_x``; SecureBoost's ``2^precision_bits`` is applied to
gradients, not features) as int64, and JSON text; USCCs as text.

The search is vectorised: every needle has an 8-byte key, the haystack is viewed as uint64 at each
of its 8 byte alignments and ``np.isin`` finds the candidate positions, which are then compared in
full. Searching megabytes of ciphertexts for thousands of needles takes well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

LABEL_WINDOW = 64  # labels per window (8 bytes packed): a leaked chunk of >= 2 windows contains one
FEATURE_WINDOW = 3  # consecutive values of one row or one column
FEATURE_ROWS = 48  # aligned training rows whose values become needles
FIXED_POINT_SCALES = (12,)  # hetero-LR features: frac_bits_x


@dataclass(frozen=True)
class Needle:
    owner: str  # the party whose private value this is
    what: str  # e.g. "labels int8 (aligned train order)"
    pattern: bytes


def _windows(seq: np.ndarray, w: int, step: int) -> Iterable[np.ndarray]:
    for a in range(0, len(seq) - w + 1, step):
        yield seq[a : a + w]


def label_needles(owner: str, labels: np.ndarray, order: str) -> list[Needle]:
    """``labels`` (0/1, in ``order``) as windows of LABEL_WINDOW in every encoding."""
    y = np.asarray(labels).astype(np.int64)
    out: list[Needle] = []
    for win in _windows(y, LABEL_WINDOW, LABEL_WINDOW):
        out += [
            Needle(owner, f"labels int8 ({order})", win.astype(np.int8).tobytes()),
            Needle(owner, f"labels int64 ({order})", win.astype(np.int64).tobytes()),
            Needle(owner, f"labels float64 ({order})", win.astype(np.float64).tobytes()),
            Needle(owner, f"labels float32 ({order})", win.astype(np.float32).tobytes()),
            Needle(owner, f"labels JSON ({order})", ", ".join(map(str, win.tolist())).encode()),
            Needle(owner, f"labels JSON compact ({order})", ",".join(map(str, win.tolist())).encode()),
        ]
    # packed bits: a leak may pack from any row, so windows start at every bit offset mod 8
    for r in range(8):
        for win in _windows(y[r:], LABEL_WINDOW, LABEL_WINDOW):
            out.append(Needle(owner, f"labels packed bits ({order})", np.packbits(win.astype(bool)).tobytes()))
    return out


def _interesting(win: np.ndarray) -> bool:
    """Skip windows of small whole numbers (categories, 0/1): they also occur in honest messages."""
    return not np.all((win == np.round(win)) & (np.abs(win) <= 10))


def feature_needles(owner: str, X: np.ndarray, what: str) -> list[Needle]:
    """Row windows and column windows of the first FEATURE_ROWS rows of ``X``, in every encoding."""
    X = np.asarray(X, dtype=np.float64)[:FEATURE_ROWS]
    wins = [w for row in X for w in _windows(row, FEATURE_WINDOW, 1)]
    wins += [w for col in X.T for w in _windows(col, FEATURE_WINDOW, FEATURE_WINDOW)]
    out: list[Needle] = []
    for win in wins:
        if not _interesting(win):
            continue
        out += [
            Needle(owner, f"{what} float64", win.tobytes()),
            Needle(owner, f"{what} float32", win.astype(np.float32).tobytes()),
        ]
        for sep in (", ", ","):  # json.dumps and compact/canonical JSON
            out.append(Needle(owner, f"{what} JSON", sep.join(repr(float(v)) for v in win).encode()))
        for bits in FIXED_POINT_SCALES:
            fx = np.rint(win * 2.0**bits).astype(np.int64)
            if np.all(np.abs(fx) < 256):  # tiny integers: not distinctive
                continue
            out += [
                Needle(owner, f"{what} fixed-point 2^{bits} int64", fx.tobytes()),
            ]
            for sep in (", ", ","):
                out.append(Needle(owner, f"{what} fixed-point 2^{bits} JSON", sep.join(map(str, fx.tolist())).encode()))
    return out


def id_needles(owner: str, ids: Iterable[str]) -> list[Needle]:
    return [Needle(owner, "USCC", u.encode()) for u in ids]


class NeedleIndex:
    """All needles keyed by an 8-byte chunk of each, for a vectorised search."""

    def __init__(self, needles: list[Needle]) -> None:
        if not needles:
            raise ValueError("no needles: the leak search would pass trivially")
        self.by_key: dict[int, list[tuple[int, Needle]]] = {}
        for n in needles:
            if len(n.pattern) < 8:
                raise ValueError(f"needle {n.what!r} shorter than 8 bytes")
            # the most varied 8-byte chunk: fewer false candidates than a run of zeros
            off = max(range(len(n.pattern) - 7), key=lambda o: (len(set(n.pattern[o : o + 8])), -o))
            key = int.from_bytes(n.pattern[off : off + 8], "little")
            self.by_key.setdefault(key, []).append((off, n))
        self.keys = np.fromiter(self.by_key, dtype=np.uint64, count=len(self.by_key))
        self.n = len(needles)

    def find(self, blob: bytes) -> list[Needle]:
        """Every needle occurring in ``blob``."""
        found: dict[int, Needle] = {}
        for r in range(min(8, max(0, len(blob) - 7))):
            count = (len(blob) - r) // 8
            words = np.frombuffer(blob, dtype="<u8", offset=r, count=count)
            for i in np.flatnonzero(np.isin(words, self.keys)):
                p = r + 8 * int(i)
                for off, n in self.by_key[int(words[i])]:
                    start = p - off
                    if start >= 0 and blob[start : start + len(n.pattern)] == n.pattern:
                        found[id(n)] = n
        return list(found.values())


def node_needles(node, *, fixed_point: bool = True) -> list[Needle]:
    """Needles for one node, from its own stored state (``parties.common.node.NodeRuntime``).

    Bank: its labels in aligned order, in aligned training order and in file order; its
    standardised training features. Centre: its standardised and raw training features. Both:
    the USCCs of the aligned rows.
    """
    from fedcredit.features import LocalPreprocessor
    from parties.vertical.phase import COMMON_ROWS, PREPROCESSOR, TEST_MASK, VAL_MASK, get_array

    data = node.data()
    rows = get_array(node, COMMON_ROWS)
    train = rows[~get_array(node, TEST_MASK) & ~get_array(node, VAL_MASK)]
    pre = LocalPreprocessor.from_dict(json.loads(str(node.get(PREPROCESSOR))))
    out = id_needles(node.name, [data.ids[i] for i in rows[:200]])
    out += feature_needles(node.name, pre.transform(data.features[train]), "standardised features (aligned train)")
    out += feature_needles(node.name, data.features[train], "raw features (aligned train)")
    if data.labels is not None:
        out += label_needles(node.name, data.labels[train], "aligned train order")
        out += label_needles(node.name, data.labels[rows], "aligned order")
        out += label_needles(node.name, data.labels, "file order")
    return out
