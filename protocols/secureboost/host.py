"""The SecureBoost host (credit centre): features, encrypted histograms, the opaque split table.

The host never holds a decryption key. It adds the guest's ciphertexts into per-node histograms
(smaller child directly, larger child by subtraction, each feature's fullest bin as total minus
the rest), forms candidate left sums, filters them by ``min_samples_leaf``, shuffles them, names
them with fresh random ids and packs them several per ciphertext (hot loops in
:mod:`protocols.secureboost.kernels`). Only it knows which (feature, threshold) an id stands for,
and which way a missing value goes at it: a feature with missing values offers each threshold
twice, missing rows right and left (:mod:`protocols.gbdt.plain`), as two unrelated ids.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.common.party import Envelope, open_envelope
from protocols.gbdt.binning import BinEdges
from protocols.gbdt.plain import binned_go_left, candidate_grid, missing_bins
from protocols.paillier import PaillierError, PublicKey
from protocols.secureboost import checkpoint, messages
from protocols.secureboost._base import SecureBoostParty, SecureBoostState, check_sender
from protocols.secureboost.config import SecureBoostConfig
from protocols.secureboost.kernels import (
    GHLayout,
    Histogram,
    blob_to_mpz,
    candidate_left_sums,
    histogram_kernel,
    mpz_to_blob,
    multiply_histograms,
    pack_kernel,
    recover_skipped_bins,
    run_tasks,
    split_evenly,
    subtract_histograms,
    take_rows,
)
from protocols.secureboost.messages import KIND_GUEST, KIND_HOST, KIND_LEAF, PROTOCOL, pack_bits, unpack_bits
from protocols.secureboost.model import SecureBoostHostModel, categorical_arrays

PARALLEL_MIN_MULTS = 20_000  # below this many ciphertext additions a level runs serially
PARALLEL_MIN_SHIFTS = 64  # below this many candidates packing runs serially


def _secret_rng() -> np.random.Generator:
    """A generator seeded from the OS CSPRNG: shuffles the guest cannot predict or replay."""
    return np.random.default_rng(secrets.randbits(128))


def _fresh_ids(count: int, taken: set[int]) -> np.ndarray:
    """``count`` distinct random 63-bit opaque ids, none in ``taken``."""
    out: list[int] = []
    seen = set(taken)
    while len(out) < count:
        for v in np.frombuffer(secrets.token_bytes(8 * (count - len(out))), dtype=np.uint64).tolist():
            v &= (1 << 63) - 1
            if v and v not in seen:
                seen.add(v)
                out.append(v)
    return np.array(out, dtype=np.uint64)


@dataclass
class _HostState(SecureBoostState):
    # phase: wait | done
    expect: str  # gradients | splits
    public_key: bytes
    fingerprint: str
    precision_bits: int
    blob: bytes
    n_nodes: int
    node_of_row: Any
    node_of_val: Any
    frontier: Any
    hist_nodes: Any
    hist_blob: bytes
    cand_id: Any
    cand_node: Any
    cand_feature: Any
    cand_bin: Any
    cand_missing_left: Any  # learned direction of missing values of each candidate (issue 17)
    cand_group: Any  # 0: a threshold candidate; k >= 1: a level of the node's k-th categorical column
    model_tree: list
    model_node: list
    model_id: list
    model_feature: list
    model_bin: list
    model_missing_left: list
    model_levels: list  # per split: the left level codes of a categorical split, [] otherwise
    n_trees_final: int
    gain_ids: Any
    gains: Any


# ---------------------------------------------------------------------------------------------
class SecureBoostHost(SecureBoostParty):
    """The feature holder: never sees a label, gradient or the guest's features."""

    role = "host"
    state_type = _HostState
    array_dtypes = {
        **dict.fromkeys(
            (
                "node_of_row",
                "node_of_val",
                "frontier",
                "hist_nodes",
                "cand_node",
                "cand_feature",
                "cand_bin",
                "cand_group",
            ),
            np.int64,
        ),
        "cand_missing_left": np.bool_,
        "cand_id": np.uint64,
        "gain_ids": np.uint64,
        "gains": np.float64,
    }

    def __init__(
        self,
        name: str,
        peer: str,
        X_train: np.ndarray,
        config: SecureBoostConfig,
        *,
        X_val: np.ndarray | None = None,
        bins: BinEdges | None = None,
        categorical: Sequence[int] = (),
    ) -> None:
        super().__init__(
            name=name, peer=peer, X_train=X_train, X_val=X_val, config=config, bins=bins, categorical=categorical
        )
        self._pk: PublicKey | None = None
        n, nv = self.X.shape[0], self.Xb_val.shape[0]
        e_i, e_u = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        self.s = _HostState(
            **self._state_fields(self.X, self.X_val, phase="wait", tree=-1),
            expect="gradients",
            public_key=b"",
            fingerprint="",
            precision_bits=config.precision_bits,
            blob=b"",
            n_nodes=0,
            node_of_row=np.zeros(n, dtype=np.int64),
            node_of_val=np.zeros(nv, dtype=np.int64),
            frontier=e_i,
            hist_nodes=e_i,
            hist_blob=b"",
            cand_id=e_u,
            cand_node=e_i,
            cand_feature=e_i,
            cand_bin=e_i,
            cand_missing_left=np.zeros(0, dtype=bool),
            cand_group=e_i,
            model_tree=[],
            model_node=[],
            model_id=[],
            model_feature=[],
            model_bin=[],
            model_missing_left=[],
            model_levels=[],
            n_trees_final=-1,
            gain_ids=e_u,
            gains=np.zeros(0),
        )

    # -- restartability (to_state is the base's: the state holds the current tree's ciphertexts)
    @classmethod
    def from_state(cls, state: bytes, X_train: np.ndarray, X_val: np.ndarray | None = None) -> SecureBoostHost:
        s, config, bins = cls._built_from(state)
        party = cls(s.name, s.peer, X_train, config, X_val=X_val, bins=bins)
        party._restore(s)
        return party

    def _after_restore(self) -> None:
        super()._after_restore()
        if self.s.public_key:
            self._pk = PublicKey.from_bytes(self.s.public_key, insecure_test_key=self.config.insecure_test_key)

    def resume_point(self) -> int | None:
        """Trees completed at a per-tree checkpoint (:mod:`protocols.secureboost.checkpoint`)."""
        return checkpoint.host_resume_point(self)

    def resume(self) -> list[Envelope]:
        return checkpoint.host_resume(self)

    # -- public surface ------------------------------------------------------------------------
    @property
    def history(self) -> list[dict]:
        return [dict(h) for h in self.s.stats.get("trees", [])]

    def _kept(self) -> np.ndarray:
        trees = np.array(self.s.model_tree, dtype=np.int64)
        if self.s.n_trees_final < 0:
            return np.ones(trees.size, dtype=bool)
        # the guest keeps its first n_trees_final trees; tree indices are the guest's
        return trees < self.s.stats.get("kept_below", 1 << 62)

    @property
    def model(self) -> SecureBoostHostModel:
        """The lookup table opaque id -> (feature, threshold, missing direction) of the kept trees."""
        s = self.s
        keep = self._kept()
        feats = np.array(s.model_feature, dtype=np.int64)[keep]
        bins_ = np.array(s.model_bin, dtype=np.int64)[keep]
        thr = np.array(
            [self.bins.threshold(int(f), int(b)) if b >= 0 else np.nan for f, b in zip(feats, bins_)], dtype=np.float64
        )
        levels = [lv for lv, k in zip(s.model_levels, keep.tolist()) if k]
        is_cat = bins_ < 0
        return SecureBoostHostModel(
            self.X.shape[1],
            np.array(s.model_id, dtype=np.uint64)[keep],
            feats,
            thr,
            np.array(s.model_tree, dtype=np.int64)[keep],
            np.array(s.model_missing_left, dtype=bool)[keep],
            *categorical_arrays(levels, is_cat),
        )

    def feature_importance(self) -> dict[str, Any]:
        """Split counts per own feature, and gains if the guest shared them (``share_host_gains``)."""
        s = self.s
        keep = self._kept()
        F = self.X.shape[1]
        feats = np.array(s.model_feature, dtype=np.int64)[keep]
        ids = np.array(s.model_id, dtype=np.uint64)[keep]
        splits = np.bincount(feats, minlength=F).astype(np.int64)
        out: dict[str, Any] = {"split_count": splits.tolist(), "gain": None}
        if s.gain_ids.size:
            gain_of = dict(zip(s.gain_ids.tolist(), s.gains.tolist()))
            gains = np.zeros(F)
            for f, i in zip(feats.tolist(), ids.tolist()):
                gains[f] += gain_of.get(i, 0.0)
            out["gain"] = gains.tolist()
        return out

    @property
    def _stage(self) -> str:
        return f"expecting {self.s.expect}"

    # -- steps ---------------------------------------------------------------------------------
    def start(self) -> list[Envelope]:
        return []  # the guest speaks first

    def _tree_stats(self) -> dict[str, Any]:
        return self.s.stats["trees"][-1]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        t0 = self._begin_step()
        out: list[Envelope] = []
        for env in inbox:
            check_sender(self, env, "training")
            kind = env.kind
            if kind == "SbGradients" and self.s.expect == "gradients":
                out += self._on_gradients(open_envelope(env, messages.SbGradients, f"host {self.name!r}"))
            elif kind == "SbSplits" and self.s.expect == "splits":
                out += self._on_splits(open_envelope(env, messages.SbSplits, f"host {self.name!r}"))
            elif kind == "SbFinish" and self.s.expect == "gradients":
                self._on_finish(open_envelope(env, messages.SbFinish, f"host {self.name!r}"))
            else:
                raise self._fail(f"unexpected {kind} (wrong step)")
        if self.s.stats.get("trees"):
            self._tree_stats()["host_seconds"] += time.perf_counter() - t0
        return out

    def _on_finish(self, msg: messages.SbFinish) -> None:
        s = self.s
        if msg.protocol != PROTOCOL:
            raise self._fail(f"unknown protocol {msg.protocol!r}")
        if not 0 <= msg.n_trees <= self.config.n_trees:
            raise self._fail(f"guest keeps {msg.n_trees} trees, more than n_trees={self.config.n_trees}")
        s.n_trees_final = int(msg.n_trees)
        s.stats["kept_below"] = int(msg.n_trees)
        gain_ids = np.asarray(msg.gain_ids, dtype=np.uint64)
        gains = np.asarray(msg.gains, dtype=np.float64)
        if gain_ids.shape != gains.shape:
            raise self._fail("gain ids and gains differ in length")
        s.gain_ids, s.gains = gain_ids, gains
        s.blob, s.hist_blob = b"", b""
        s.phase = "done"

    def _on_gradients(self, msg: messages.SbGradients) -> list[Envelope]:
        s, cfg = self.s, self.config
        if msg.protocol != PROTOCOL:
            raise self._fail(f"unknown protocol {msg.protocol!r}")
        if msg.tree <= s.tree or msg.tree >= cfg.n_trees:
            raise self._fail(f"gradients for tree {msg.tree} after tree {s.tree} (n_trees={cfg.n_trees}; wrong step)")
        if msg.n_rows != self.X.shape[0]:
            raise self._fail(
                f"guest has {msg.n_rows} training rows, this host {self.X.shape[0]} (wrong length: "
                "rows must be PSI-aligned)"
            )
        if msg.n_val_rows != self.Xb_val.shape[0]:
            raise self._fail(
                f"guest has {msg.n_val_rows} validation rows, this host {self.Xb_val.shape[0]} (wrong length)"
            )
        if msg.precision_bits != cfg.precision_bits:
            raise self._fail(f"guest uses precision_bits={msg.precision_bits}, config says {cfg.precision_bits}")
        try:
            pk = PublicKey.from_bytes(msg.public_key, insecure_test_key=cfg.insecure_test_key)
        except PaillierError as exc:
            raise self._fail(f"guest public key refused: {exc}") from None
        if s.fingerprint and pk.fingerprint != s.fingerprint:
            raise self._fail(f"gradients under key {pk.fingerprint}, earlier trees used {s.fingerprint} (wrong key)")
        width = pk.ciphertext_bytes
        if len(msg.ciphertexts) != msg.n_rows * width:
            raise self._fail(
                f"{len(msg.ciphertexts)} ciphertext bytes for {msg.n_rows} rows of {width} bytes "
                "(wrong length or wrong key)"
            )
        self._pk = pk
        s.public_key, s.fingerprint = msg.public_key, pk.fingerprint
        s.tree, s.level, s.blob, s.n_nodes = int(msg.tree), 0, msg.ciphertexts, 1
        s.node_of_row = np.zeros(self.X.shape[0], dtype=np.int64)
        s.node_of_val = np.zeros(self.Xb_val.shape[0], dtype=np.int64)
        s.stats.setdefault("trees", []).append(
            {
                "tree": s.tree,
                "hist_rows": 0,
                "candidates": 0,
                "packed": 0,
                "host_seconds": 0.0,
                "hist_seconds": 0.0,
                "pack_seconds": 0.0,
            }
        )
        hist = self._histograms([0], {})
        s.expect = "splits"
        return [self._reply(0, [], [], [], [0], hist)]

    def _on_splits(self, msg: messages.SbSplits) -> list[Envelope]:
        s, p = self.s, self.params
        if msg.protocol != PROTOCOL:
            raise self._fail(f"unknown protocol {msg.protocol!r}")
        if msg.tree != s.tree or msg.level != s.level:
            raise self._fail(
                f"splits for tree {msg.tree} level {msg.level}, expected tree {s.tree} level {s.level} (wrong step)"
            )
        nodes = [int(v) for v in np.asarray(msg.nodes).tolist()]
        if nodes != [int(v) for v in s.frontier.tolist()]:
            raise self._fail(f"decisions for nodes {nodes}, this level has {s.frontier.tolist()}")
        arrays = (msg.kind, msg.split_id, msg.left, msg.right, msg.expand_left, msg.expand_right)
        if any(np.asarray(a).shape != (len(nodes),) for a in arrays):
            raise self._fail("decision arrays differ in length from the node list (wrong length)")
        kind = np.asarray(msg.kind)
        at = {nd: np.flatnonzero(s.node_of_row == nd) for nd in nodes}
        vat = {nd: np.flatnonzero(s.node_of_val == nd) for nd in nodes}
        guest_nodes = [nd for nd, k in zip(nodes, kind.tolist()) if k == KIND_GUEST]
        try:
            gmasks = iter(unpack_bits(msg.train_bits, [at[nd].size for nd in guest_nodes], "train_bits"))
            gvmasks = iter(unpack_bits(msg.val_bits, [vat[nd].size for nd in guest_nodes], "val_bits"))
        except ValueError as exc:
            raise self._fail(f"guest partition bitmask has the wrong length: {exc}") from None
        cand_index = {int(c): j for j, c in enumerate(s.cand_id.tolist())}
        level_sets = self._level_sets(msg, kind)
        split_nodes, tbits, vbits = [], [], []
        expanded: list[int] = []
        derived: dict[int, tuple[int, int]] = {}
        direct: list[int] = []
        min_rows = max(2, 2 * p.min_samples_leaf)
        deeper = s.level + 1 < p.max_depth
        for i, nd in enumerate(nodes):
            k = int(kind[i])
            if k == KIND_LEAF:
                continue
            lid, rid = int(msg.left[i]), int(msg.right[i])
            if (lid, rid) != (s.n_nodes, s.n_nodes + 1):
                raise self._fail(f"node {nd} children {lid},{rid}, expected {s.n_nodes},{s.n_nodes + 1}")
            s.n_nodes += 2
            rows, vrows = at[nd], vat[nd]
            if k == KIND_GUEST:
                go, vgo = next(gmasks), next(gvmasks)
            elif k == KIND_HOST:
                j = cand_index.get(int(msg.split_id[i]))
                if j is None or int(s.cand_node[j]) != nd:
                    raise self._fail(f"split id {int(msg.split_id[i])} is not a candidate of node {nd}")
                f, b, ml = int(s.cand_feature[j]), int(s.cand_bin[j]), bool(s.cand_missing_left[j])
                mb = int(missing_bins(self.bins)[f])
                chosen = next(level_sets)
                if chosen and not s.cand_group[j]:
                    raise self._fail(f"level ids sent for the threshold split of node {nd}")
                left_bins = self._chosen_levels(nd, j, chosen) if s.cand_group[j] else None
                if left_bins is not None:
                    b, ml = -1, mb in left_bins
                go = binned_go_left(self.Xb[rows, f], b, ml, mb, left_bins)
                vgo = binned_go_left(self.Xb_val[vrows, f], b, ml, mb, left_bins)
                s.model_levels.append([] if left_bins is None else self.bins.levels(f, np.array(left_bins)).tolist())
                s.model_tree.append(s.tree)
                s.model_node.append(nd)
                s.model_id.append(int(msg.split_id[i]))
                s.model_feature.append(f)
                s.model_bin.append(b)
                s.model_missing_left.append(ml)
                split_nodes.append(nd)
                tbits.append(go)
                vbits.append(vgo)
            else:
                raise self._fail(f"unknown decision kind {k} for node {nd}")
            s.node_of_row[rows[go]], s.node_of_row[rows[~go]] = lid, rid
            s.node_of_val[vrows[vgo]], s.node_of_val[vrows[~vgo]] = lid, rid
            n_l, n_r = int(go.sum()), int((~go).sum())
            want = [
                c
                for c, flag, n_c in ((lid, msg.expand_left[i], n_l), (rid, msg.expand_right[i], n_r))
                if flag and deeper and n_c >= min_rows
            ]
            if want:
                small, large = (lid, rid) if n_l <= n_r else (rid, lid)
                direct.append(small)
                if large in want:
                    derived[large] = (nd, small)
                expanded += want
        s.level += 1
        expanded.sort()
        hist = self._histograms(direct, derived) if expanded else {}
        if not split_nodes and not expanded:
            s.expect, s.frontier, s.hist_nodes, s.hist_blob = (
                "gradients",
                np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64),
                b"",
            )
            return []
        reply = self._reply(s.level, split_nodes, tbits, vbits, expanded, hist)
        if not expanded:
            s.expect = "gradients"
        return [reply]

    def _level_sets(self, msg: messages.SbSplits, kind: np.ndarray) -> Iterator[list[int]]:
        """The chosen left level ids of each categorical host split, in decision order."""
        n_levels = np.asarray(msg.n_levels, dtype=np.int64)
        level_ids = np.asarray(msg.level_ids, dtype=np.uint64)
        if n_levels.shape != kind.shape or n_levels.min(initial=0) < 0 or int(n_levels.sum()) != level_ids.size:
            raise self._fail("level id counts do not match the decisions or the level ids (wrong length)")
        if (n_levels[kind != KIND_HOST] != 0).any():
            raise self._fail("level ids sent for a decision that is not a host split")
        bounds = np.concatenate([[0], np.cumsum(n_levels)])
        return iter([level_ids[bounds[i] : bounds[i + 1]].tolist() for i in range(kind.size) if kind[i] == KIND_HOST])

    def _chosen_levels(self, nd: int, j: int, ids: list[int]) -> list[int]:
        """Bins of the left levels the guest chose at node ``nd`` (``j``: the split id's candidate)."""
        s = self.s
        index = {int(c): i for i, c in enumerate(s.cand_id.tolist())}
        at = [index.get(int(i), -1) for i in ids]
        group = np.flatnonzero((s.cand_node == nd) & (s.cand_group == s.cand_group[j]))
        if not ids or j not in at or any(a not in group for a in at) or len(set(at)) != len(at):
            raise self._fail(f"categorical split of node {nd}: level ids are not levels of the split's column")
        if len(at) >= group.size:
            raise self._fail(f"categorical split of node {nd}: every level goes left")
        return sorted(int(s.cand_bin[a]) for a in at)

    # -- encrypted histograms ---------------------------------------------------------------------
    def _histograms(self, direct: list[int], derived: dict[int, tuple[int, int]]) -> dict[int, Histogram]:
        """Full (F x B) encrypted histograms of ``direct`` nodes (from rows) and ``derived`` ones.

        ``derived[large] = (parent, small)``: ``large = parent - small`` bin by bin (one batch
        inversion). Within a direct node, each feature's fullest bin (except for the feature
        whose fullest bin is smallest, which gives the node total) is skipped by the row loop
        and recovered as ``total - other bins``.
        """
        assert self._pk is not None
        nsq = self._pk.nsquare
        out = self._direct_histograms(direct) if direct else {}
        if derived:
            parents = self._stored_histograms()
            larges = sorted(derived)
            for lg in larges:
                if derived[lg][0] not in parents:
                    raise self._fail(f"no stored histogram for node {derived[lg][0]} (state lost?)")
            of_parent = [parents[derived[lg][0]] for lg in larges]
            of_small = [out[derived[lg][1]] for lg in larges]
            out.update(zip(larges, subtract_histograms(of_parent, of_small, nsq)))
        return out

    def _direct_histograms(self, direct: list[int]) -> dict[int, Histogram]:
        """Histograms of ``direct`` nodes from their rows, split across the worker processes."""
        s = self.s
        assert self._pk is not None
        nsq, width = self._pk.nsquare, self._pk.ciphertext_bytes
        F, B = self.X.shape[1], self.B
        pos = np.full(s.n_nodes, -1, dtype=np.int64)
        pos[direct] = np.arange(len(direct))
        rows = np.flatnonzero(pos[s.node_of_row] >= 0)
        local = pos[s.node_of_row[rows]]
        bins = self.Xb[rows].astype(np.int64)  # (m, F)
        bucket = local[:, None] * B + bins  # (m, F)
        cnt = np.stack([np.bincount(bucket[:, f], minlength=len(direct) * B) for f in range(F)])
        cnt = cnt.reshape(F, len(direct), B).transpose(1, 0, 2)  # (nodes, F, B)
        fullest = cnt.max(axis=2)  # (nodes, F)
        total_f = fullest.argmin(axis=1)  # the feature kept whole
        skip = np.where(fullest > B + 8, cnt.argmax(axis=2), -1)  # skipping pays off only then
        skip[np.arange(len(direct)), total_f] = -1
        keys = bucket.T.copy()  # (F, m)
        keys[(bins == skip[local]).T] = -1
        n_mults = int((keys >= 0).sum())
        self._tree_stats()["hist_rows"] += int(rows.size)
        parts = split_evenly(rows.size, self._workers if n_mults >= PARALLEL_MIN_MULTS else 1)
        tasks = [
            (int(nsq), width, take_rows(s.blob, width, rows[a:b]), keys[:, a:b], len(direct) * B) for a, b in parts
        ]
        t_hist = time.perf_counter()
        results = [blob_to_mpz(r, width) for r in run_tasks(histogram_kernel, tasks, self._workers)]
        self._tree_stats()["hist_seconds"] += time.perf_counter() - t_hist
        hist = multiply_histograms(results, nsq)  # (F, nodes, B) row-major
        recover_skipped_bins(hist, len(direct), B, total_f, skip, nsq)
        return {
            nd: [hist[(f * len(direct) + k) * B + b] for f in range(F) for b in range(B)] for k, nd in enumerate(direct)
        }

    def _stored_histograms(self) -> dict[int, Histogram]:
        s = self.s
        assert self._pk is not None
        width = self._pk.ciphertext_bytes
        size = self.X.shape[1] * self.B
        flat = blob_to_mpz(s.hist_blob, width) if s.hist_blob else []
        return {int(nd): flat[i * size : (i + 1) * size] for i, nd in enumerate(s.hist_nodes.tolist())}

    def _reply(
        self,
        level: int,
        split_nodes: list[int],
        tbits: list[np.ndarray],
        vbits: list[np.ndarray],
        nodes: list[int],
        hist: dict[int, Histogram],
    ) -> Envelope:
        """Candidates of ``nodes`` (shuffled, opaque ids, packed) plus the host-split partitions."""
        s = self.s
        assert self._pk is not None
        nsq, width = self._pk.nsquare, self._pk.ciphertext_bytes
        F, B = self.X.shape[1], self.B
        p = self.params
        # counts of the expanded nodes (plaintext: the host knows its bins and the partitions)
        pos = np.full(s.n_nodes, -1, dtype=np.int64)
        pos[nodes] = np.arange(len(nodes))
        rows = np.flatnonzero(pos[s.node_of_row] >= 0) if nodes else np.zeros(0, dtype=np.int64)
        local = pos[s.node_of_row[rows]]
        keys = ((local[:, None] * F + np.arange(F)[None, :]) * B + self.Xb[rows]).ravel()
        cnt = np.bincount(keys, minlength=len(nodes) * F * B).reshape(len(nodes), F, B)
        rng = _secret_rng()
        cts: Histogram = []
        c_node: list[int] = []
        c_feat: list[int] = []
        c_bin: list[int] = []
        c_ml: list[bool] = []
        c_group: list[int] = []
        lv: dict[str, list] = {k: [] for k in ("cts", "node", "feat", "bin", "group", "count")}  # level entries
        miss_bin = missing_bins(self.bins)
        cats = sorted(self.bins.categorical)
        for k, nd in enumerate(nodes):
            mask = candidate_grid(cnt[k], self.n_bins, miss_bin, p.min_samples_leaf)
            mask[cats] = False  # categorical columns: level sums below, no thresholds
            node_cts, node_meta = candidate_left_sums(hist[nd], self.n_bins, B, mask, miss_bin, nsq)
            perm = rng.permutation(len(node_cts))
            cts += [node_cts[i] for i in perm]
            c_node += [nd] * len(perm)
            c_feat += [node_meta[i][0] for i in perm]
            c_bin += [node_meta[i][1] for i in perm]
            c_ml += [node_meta[i][2] for i in perm]
            c_group += [0] * len(perm)
            # categorical columns in random order, each a group of its non-empty levels in level order
            groups = [(f, np.flatnonzero(cnt[k, f] > 0)) for f in cats]
            groups = [groups[i] for i in rng.permutation(len(groups)) if groups[i][1].size >= 2]
            for g, (f, levels) in enumerate(groups, start=1):
                lv["cts"] += [hist[nd][f * B + int(b)] for b in levels]
                lv["node"] += [nd] * levels.size
                lv["feat"] += [f] * levels.size
                lv["bin"] += levels.tolist()
                lv["group"] += [g] * levels.size
                lv["count"] += cnt[k, f, levels].tolist()
        # level entries go last, so a run without categorical columns sends no level arrays at all
        cts += lv["cts"]
        c_node += lv["node"]
        c_feat += lv["feat"]
        c_bin += lv["bin"]
        c_ml += [False] * len(lv["cts"])
        c_group += lv["group"]
        ids = _fresh_ids(len(cts), set(s.model_id))
        layout = GHLayout(s.precision_bits, self.X.shape[0], self._pk.bits)
        K = layout.slots
        n_groups = -(-len(cts) // K)
        w = self._workers if len(cts) >= PARALLEL_MIN_SHIFTS else 1
        tasks = [
            (s.public_key, mpz_to_blob(cts[a * K : b * K], width), K, layout.slot_bits)
            for a, b in split_evenly(n_groups, w)
        ]
        t_pack = time.perf_counter()
        packed = b"".join(run_tasks(pack_kernel, tasks, w)) if tasks else b""
        self._tree_stats()["pack_seconds"] += time.perf_counter() - t_pack
        ts = self._tree_stats()
        ts["candidates"] += len(cts)
        ts["packed"] += n_groups
        # remember what the ids mean (never sent) and the histograms for the next subtraction
        s.frontier = np.array(nodes, dtype=np.int64)
        s.cand_id = ids
        s.cand_node = np.array(c_node, dtype=np.int64)
        s.cand_feature = np.array(c_feat, dtype=np.int64)
        s.cand_bin = np.array(c_bin, dtype=np.int64)
        s.cand_missing_left = np.array(c_ml, dtype=bool)
        s.cand_group = np.array(c_group, dtype=np.int64)
        s.hist_nodes = np.array(nodes, dtype=np.int64)
        s.hist_blob = b"".join(mpz_to_blob(hist[nd], width) for nd in nodes)
        msg = messages.SbLevelReply(
            protocol=PROTOCOL,
            tree=s.tree,
            level=level,
            key_fingerprint=s.fingerprint,
            split_nodes=np.array(split_nodes, dtype=np.int32),
            train_bits=pack_bits(tbits),
            val_bits=pack_bits(vbits),
            nodes=np.array(nodes, dtype=np.int32),
            cand_node=np.array(c_node, dtype=np.int32),
            cand_id=ids,
            slots=K,
            packed=packed,
            level_group=np.array(lv["group"], dtype=np.int32),
            level_count=np.array(lv["count"], dtype=np.int64),
        )
        return self.send(self.peer, msg)
