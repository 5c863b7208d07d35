"""SecureBoost wire messages: what crosses the guest (bank) / host (credit centre) boundary.

Every field is either a ciphertext blob (fixed-width big-endian Paillier ciphertexts under the
guest's key), an opaque split id, a node id, a size, or a partition bitmask (the documented
leakage to the host). No message carries a plaintext gradient, hessian, label, feature value
or threshold; ``tests/test_secureboost.py`` checks that on every envelope of a run.

Flow per tree (``D = max_depth``)::

    guest -> host  SbGradients(tree)              packed [g|h] per training row, encrypted
    host  -> guest SbLevelReply(level 0)          root candidates (packed, shuffled, opaque ids)
    guest -> host  SbSplits(level 0)              per node: leaf | guest split + bitmask | host id
    host  -> guest SbLevelReply(level 1)          bitmasks of level-0 host splits + level-1 candidates
    ...
    guest -> host  SbSplits(level D-1)
    host  -> guest SbLevelReply(level D)          bitmasks of the last host splits (only if any)
    guest -> host  SbGradients(tree + 1) | SbFinish

A level reply is skipped whenever the guest needs nothing from the host (no host split and no
node left to expand); the guest then sends its SbSplits and the next SbGradients in one step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOL = "fedcredit-secureboost/2"  # /2: categorical host columns (level groups, chosen level ids)

# SbSplits.kind values
KIND_LEAF, KIND_GUEST, KIND_HOST = 0, 1, 2


@dataclass
class SbGradients:
    """Start of a tree: the guest's key and one encrypted packed ``g*2^hb + h`` per training row."""

    protocol: str
    tree: int
    public_key: bytes
    n_rows: int
    n_val_rows: int
    precision_bits: int
    ciphertexts: bytes


@dataclass
class SbLevelReply:
    """Host -> guest: partitions of the previous level's host splits, then this level's candidates.

    ``split_nodes`` (previous level, host splits, in decision order) come with ``train_bits`` /
    ``val_bits``: for each node, one bit per row of the node (ascending row index), 1 = left,
    concatenated and ``np.packbits``-ed. ``nodes`` lists the nodes whose candidates follow;
    ``cand_node[j]`` and ``cand_id[j]`` say which node and which opaque split candidate ``j``
    is; candidate ``j`` sits in slot ``j % slots`` of packed ciphertext ``j // slots``.

    Categorical host columns (issue 17) send no thresholds but per-level sums, as the **last**
    ``L = level_group.size`` candidates: candidate ``J - L + i`` (``J`` candidates in all) is a
    level of its node's ``level_group[i]``-th categorical column (``>= 1``; one entry per
    non-empty level, missing counting as a level, in the host's level order; the column is not
    named and the level is an opaque id) holding ``level_count[i]`` rows, so the guest can apply
    ``min_samples_leaf`` to the level prefixes it scores. All others are threshold candidates.
    """

    protocol: str
    tree: int
    level: int
    key_fingerprint: str
    split_nodes: np.ndarray
    train_bits: np.ndarray
    val_bits: np.ndarray
    nodes: np.ndarray
    cand_node: np.ndarray
    cand_id: np.ndarray
    slots: int
    packed: bytes
    level_group: np.ndarray
    level_count: np.ndarray


@dataclass
class SbSplits:
    """Guest -> host: the decision for every node of ``level`` (in the order the host sent them).

    ``kind[i]`` is leaf / guest split / host split; for host splits ``split_id[i]`` is the
    chosen opaque id; for splits ``left[i]``, ``right[i]`` are the new child node ids and
    ``expand_*`` say whether the guest wants the child's histograms (it may still be split:
    enough hessian; the host additionally drops children with too few rows). Guest splits come
    with bitmasks over the node's training / validation rows as in :class:`SbLevelReply`.
    A host split on a categorical column names its left levels: ``level_ids`` holds them for all
    such nodes, ``n_levels[i]`` how many belong to node ``i`` (0 for every other decision);
    ``split_id[i]`` is then one of them (it names the split in both model halves).
    """

    protocol: str
    tree: int
    level: int
    nodes: np.ndarray
    kind: np.ndarray
    split_id: np.ndarray
    left: np.ndarray
    right: np.ndarray
    expand_left: np.ndarray
    expand_right: np.ndarray
    train_bits: np.ndarray
    val_bits: np.ndarray
    level_ids: np.ndarray
    n_levels: np.ndarray


@dataclass
class SbFinish:
    """Guest -> host: training is over; keep the first ``n_trees`` trees.

    ``gain_ids``/``gains`` (only with ``share_host_gains``) give the split gain of each host
    split so the host can rank its own features by gain; otherwise both are empty.
    """

    protocol: str
    n_trees: int
    gain_ids: np.ndarray
    gains: np.ndarray


@dataclass
class SbDirectionQuery:
    """Scoring: the guest asks for the host's direction bits.

    ``mode == "cross"``: every row in ``rows`` at every id in ``split_ids`` (one round trip;
    the host learns nothing about the guest's trees or paths). ``mode == "pairs"``: only
    ``(rows[i], split_ids[i])`` (the path-walking mode, one round per host depth).
    """

    protocol: str
    query: int
    mode: str
    rows: np.ndarray
    split_ids: np.ndarray


@dataclass
class SbDirectionReply:
    """Scoring: ``np.packbits`` of the direction bits (1 = left) in the query's order."""

    protocol: str
    query: int
    n_bits: int
    bits: np.ndarray


@dataclass
class SbScoringDone:
    """Scoring: the guest has every bit it needs; the host may stop."""

    protocol: str
    queries: int


def pack_bits(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate boolean arrays and ``np.packbits`` them (empty -> empty uint8)."""
    if not parts:
        return np.zeros(0, dtype=np.uint8)
    return np.packbits(np.concatenate([np.asarray(p, dtype=bool) for p in parts]))


def unpack_bits(bits: np.ndarray, sizes: list[int], what: str) -> list[np.ndarray]:
    """Inverse of :func:`pack_bits` for parts of known ``sizes``; a wrong length is an error."""
    total = int(sum(sizes))
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.size != (total + 7) // 8:
        raise ValueError(f"{what}: {bits.size} bytes of bits, expected {(total + 7) // 8} for {total} rows")
    flat = np.unpackbits(bits, count=total).astype(bool) if total else np.zeros(0, dtype=bool)
    out, at = [], 0
    for s in sizes:
        out.append(flat[at : at + s])
        at += s
    return out
