"""The SecureBoost guest (bank): labels, Paillier key, split decisions, the tree structures.

Per tree it encrypts the packed fixed-point gradient/hessian of every training row once; per
level it decrypts the host's packed candidate sums, scores them and its own candidates with the
plaintext reference's functions (:mod:`protocols.gbdt.plain`) and sends one decision per node.
See :mod:`protocols.secureboost` for the protocol and ``docs/protocols/secureboost.md`` for what
each side learns.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.common.inputs import as_labels
from protocols.common.party import Envelope, open_envelope
from protocols.gbdt.binning import BinEdges
from protocols.gbdt.params import GBDTParams
from protocols.gbdt.plain import (
    OWNER_GUEST,
    OWNER_HOST,
    EarlyStopper,
    Tree,
    TreeBuilder,
    base_score,
    best_split,
    binned_go_left,
    can_split,
    categorical_order,
    first_max,
    logloss,
    missing_bins,
    node_histograms,
    quantized_grad_hess,
    roc_auc,
    split_gains,
)
from protocols.paillier import PrivateKey, PublicKey, generate_keypair
from protocols.secureboost import checkpoint
from protocols.secureboost._base import SecureBoostParty, SecureBoostState
from protocols.secureboost.config import SecureBoostConfig
from protocols.secureboost.kernels import (
    GHLayout,
    PackingError,
    blob_to_mpz,
    outside_ciphertext_space,
    signed_plaintexts,
)
from protocols.secureboost.messages import (
    KIND_GUEST,
    KIND_HOST,
    KIND_LEAF,
    PROTOCOL,
    SbFinish,
    SbGradients,
    SbLevelReply,
    SbSplits,
    pack_bits,
    unpack_bits,
)
from protocols.secureboost.model import SecureBoostGuestModel

log = logging.getLogger(__name__)

# of one node: opaque ids, decrypted G_L, H_L (per level for categorical groups), group, level row count
HostCandidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _GuestState(SecureBoostState):
    # phase: init | wait | done
    private_key: bytes
    base: float
    raw: Any
    raw_val: Any
    g: Any
    h: Any
    builder: dict
    node_of_row: Any
    node_of_val: Any
    pending: list  # host splits awaiting partitions: [node, split_id, GL, HL]
    flagged: list  # children the guest asked to expand (host adds the row-count rule)
    trees: list
    history: list
    stopper: dict
    stop: bool


# ---------------------------------------------------------------------------------------------
class SecureBoostGuest(SecureBoostParty):
    """The label holder. Rows are PSI-aligned with the host's (row i here = row i there)."""

    role = "guest"
    state_type = _GuestState
    array_dtypes = {
        "raw": np.float64,
        "raw_val": np.float64,
        "g": np.int64,
        "h": np.int64,
        "node_of_row": np.int64,
        "node_of_val": np.int64,
    }

    def __init__(
        self,
        name: str,
        peer: str,
        X_train: np.ndarray,
        y_train: np.ndarray,
        config: SecureBoostConfig,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        bins: BinEdges | None = None,
        on_tree: Callable[[dict], None] | None = None,
        categorical: Sequence[int] = (),
    ) -> None:
        who = f"guest {name!r}"
        if (X_val is None) != (y_val is None):
            raise ValueError(f"{who}: give both X_val and y_val, or neither")
        super().__init__(
            name=name, peer=peer, X_train=X_train, X_val=X_val, config=config, bins=bins, categorical=categorical
        )
        self.on_tree = on_tree  # called with each tree's history record (metrics, ledger)
        n, nv = self.X.shape[0], self.Xb_val.shape[0]
        y = as_labels(y_train, n, who, "y_train", signed=False)
        if y is None:
            raise ValueError(f"{who}: y_train is required")
        self.y = y
        self.y_val = as_labels(y_val, nv, who, "y_val", signed=False)
        if self.y_val is not None and self.y_val.size == 0:
            # no validation rows (validation_fraction = 0): NaN losses would stop training early,
            # keep zero trees and make the finish summary unserialisable
            self.y_val = None
        self._sk: PrivateKey | None = None
        self._tb = TreeBuilder()
        self._trees: list[Tree] = []
        self._stopper = EarlyStopper(config.early_stopping_rounds)
        self.s = _GuestState(
            **self._state_fields(self.X, self.y, self.X_val, self.y_val, phase="init", tree=0),
            private_key=b"",
            base=0.0,
            raw=np.zeros(n),
            raw_val=np.zeros(nv),
            g=np.zeros(n, dtype=np.int64),
            h=np.zeros(n, dtype=np.int64),
            builder={},
            node_of_row=np.zeros(n, dtype=np.int64),
            node_of_val=np.zeros(nv, dtype=np.int64),
            pending=[],
            flagged=[],
            trees=[],
            history=[],
            stopper={},
            stop=False,
        )

    # -- restartability ------------------------------------------------------------------------
    def to_state(self) -> bytes:
        """Everything needed to continue (node-local: contains the private key)."""
        s = self.s
        s.builder = self._tb.to_dict()
        s.trees = [t.to_dict() for t in self._trees]
        s.stopper = dataclasses.asdict(self._stopper)
        return super().to_state()

    @classmethod
    def from_state(
        cls,
        state: bytes,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        on_tree: Callable[[dict], None] | None = None,
    ) -> SecureBoostGuest:
        s, config, bins = cls._built_from(state)
        party = cls(s.name, s.peer, X_train, y_train, config, X_val=X_val, y_val=y_val, bins=bins, on_tree=on_tree)
        party._restore(s)
        return party

    def _after_restore(self) -> None:
        super()._after_restore()
        s = self.s
        self._tb = TreeBuilder.from_dict(s.builder) if s.builder else TreeBuilder()
        self._trees = [Tree.from_dict(t) for t in s.trees]
        self._stopper = EarlyStopper(**s.stopper) if s.stopper else EarlyStopper(self.config.early_stopping_rounds)
        if s.private_key:
            self._sk = PrivateKey.from_bytes(s.private_key, insecure_test_key=self.config.insecure_test_key)

    def resume_point(self) -> int | None:
        """Trees completed at a per-tree checkpoint (:mod:`protocols.secureboost.checkpoint`)."""
        return checkpoint.guest_resume_point(self)

    def resume(self) -> list[Envelope]:
        return checkpoint.guest_resume(self)

    # -- public surface ------------------------------------------------------------------------
    @property
    def public_key(self) -> PublicKey | None:
        return None if self._sk is None else self._sk.public_key

    @property
    def model(self) -> SecureBoostGuestModel:
        """Trees with guest splits and opaque host ids (the guest's part of the model)."""
        return SecureBoostGuestModel(
            float(self.s.base), self.X.shape[1], [Tree.from_dict(t.to_dict()) for t in self._trees]
        )

    def feature_importance(self) -> dict[str, Any]:
        """Split counts and total gains per guest feature, and for the host side as a whole."""
        F = self.X.shape[1]
        splits, gains = np.zeros(F, dtype=np.int64), np.zeros(F)
        host_splits, host_gain = 0, 0.0
        for t in self._trees:
            for k in range(t.n_nodes):
                if t.owner[k] == OWNER_GUEST:
                    splits[t.feature[k]] += 1
                    gains[t.feature[k]] += t.gain[k]
                elif t.owner[k] == OWNER_HOST:
                    host_splits += 1
                    host_gain += float(t.gain[k])
        return {
            "guest": {"split_count": splits.tolist(), "gain": gains.tolist()},
            "host": {"split_count": host_splits, "gain": host_gain},
        }

    def _layout(self) -> GHLayout:
        assert self._sk is not None
        return GHLayout(self.config.precision_bits, self.X.shape[0], self._sk.public_key.bits)

    # -- steps ---------------------------------------------------------------------------------
    def start(self) -> list[Envelope]:
        if self.s.phase != "init":
            raise self._fail("start() called twice")
        t0 = time.perf_counter()
        _, sk = generate_keypair(self.config.key_bits, insecure_test_key=self.config.insecure_test_key)
        self._sk = sk
        self.s.private_key = sk.to_bytes()
        self.s.base = base_score(self.y)
        self.s.raw = np.full(self.X.shape[0], self.s.base)
        self.s.raw_val = np.full(self.Xb_val.shape[0], self.s.base)
        out = self._next_trees([], t0)
        return out

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        t0 = self._begin_step()
        if self.s.phase != "wait":
            raise self._fail(f"received {len(inbox)} message(s) but expects none")
        if len(inbox) != 1 or inbox[0].sender != self.peer:
            raise self._fail(
                f"expected exactly one message from {self.peer!r}, got {[(e.sender, e.kind) for e in inbox]}"
            )
        env = inbox[0]
        if env.kind != "SbLevelReply":
            raise self._fail(f"expected SbLevelReply, got {env.kind}")
        msg = open_envelope(env, SbLevelReply, f"guest {self.name!r}")
        self.s.stats["steps"] = self.s.stats.get("steps", 0) + 1
        return self._on_level_reply(msg, t0)

    # -- tree lifecycle -------------------------------------------------------------------------
    def _next_trees(self, out: list[Envelope], t0: float) -> list[Envelope]:
        """Start trees until one needs the host (send its gradients) or training is over."""
        s = self.s
        while True:
            if s.tree >= self.config.n_trees or s.stop:
                return out + [self._finish()]
            env = self._begin_tree(t0)
            if env is not None:
                s.phase = "wait"
                return out + [env]
            self._finish_tree(t0)
            t0 = time.perf_counter()

    def _begin_tree(self, t0: float) -> Envelope | None:
        s, p = self.s, self.params
        s.g, s.h = quantized_grad_hess(self.y, s.raw, p.precision_bits)
        n = self.X.shape[0]
        self._tb = TreeBuilder()
        self._tb.add_node(int(s.g.sum()), int(s.h.sum()), n)
        s.node_of_row = np.zeros(n, dtype=np.int64)
        s.node_of_val = np.zeros(self.Xb_val.shape[0], dtype=np.int64)
        s.pending, s.flagged, s.level = [], [], 0
        s.stats = {
            "steps": 0,
            "decryptions": 0,
            "host_candidates": 0,
            "encryptions": 0,
            "guest_seconds": 0.0,
            "encrypt_seconds": 0.0,
            "decrypt_seconds": 0.0,
            "bytes_sent": 0,
        }
        if not can_split(n, self._tb.H[0], p):
            return None  # a single-leaf tree needs nobody
        if p.complete_secure and s.tree == 0:
            self._grow_locally()
            return None
        layout = self._layout()
        assert self._sk is not None
        plaintexts = layout.encode(s.g, s.h)
        t_enc = time.perf_counter()
        cts = self._sk.encrypt(plaintexts, workers=self._workers)
        s.stats["encrypt_seconds"] += time.perf_counter() - t_enc
        s.stats["encryptions"] = len(plaintexts)
        s.flagged = [0]
        msg = SbGradients(
            protocol=PROTOCOL,
            tree=s.tree,
            public_key=self._sk.public_key.to_bytes(),
            n_rows=n,
            n_val_rows=int(self.Xb_val.shape[0]),
            precision_bits=self.config.precision_bits,
            ciphertexts=cts.to_bytes(),
        )
        env = self.send(self.peer, msg)
        s.stats["bytes_sent"] += env.size
        s.stats["guest_seconds"] += time.perf_counter() - t0
        return env

    def _grow_locally(self) -> None:
        """A tree on guest features only (``complete_secure``'s first tree): no messages."""
        frontier = [0]
        for level in range(self.params.max_depth):
            if not frontier:
                break
            self._decide(level, frontier, None)
            frontier = sorted(int(c) for c in self.s.flagged)

    def _finish_tree(self, t0: float) -> None:
        s = self.s
        tree = self._tb.finish(self.params)
        self._trees.append(tree)
        s.raw = s.raw + tree.value[s.node_of_row]
        s.raw_val = s.raw_val + tree.value[s.node_of_val]
        s.stats["guest_seconds"] += time.perf_counter() - t0
        rec: dict[str, Any] = {
            "tree": s.tree,
            "train_loss": logloss(self.y, s.raw),
            "n_nodes": tree.n_nodes,
            "guest_splits": int((tree.owner == OWNER_GUEST).sum()),
            "host_splits": int((tree.owner == OWNER_HOST).sum()),
        }
        rec.update(s.stats)
        if self.y_val is not None:
            rec["val_loss"] = logloss(self.y_val, s.raw_val)
            rec["val_auc"] = roc_auc(self.y_val, s.raw_val)
            if self._stopper.update(len(self._trees), rec["val_loss"]):
                s.stop = True
        s.history.append(rec)
        log.info("secureboost guest %s: tree %d done (%s)", self.name, s.tree, rec)
        if self.on_tree is not None:
            self.on_tree(dict(rec))
        s.tree += 1

    def _finish(self) -> Envelope:
        s = self.s
        if self.y_val is not None and self.config.early_stopping_rounds > 0:
            self._trees = self._trees[: self._stopper.best_n_trees]
        ids, gains = [], []
        if self.config.share_host_gains:
            for t in self._trees:
                hs = t.owner == OWNER_HOST
                ids.append(t.split_id[hs])
                gains.append(t.gain[hs])
        s.phase = "done"
        return self.send(
            self.peer,
            SbFinish(
                protocol=PROTOCOL,
                n_trees=len(self._trees),
                gain_ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.uint64),
                gains=np.concatenate(gains) if gains else np.zeros(0),
            ),
        )

    # -- one level ------------------------------------------------------------------------------
    def _on_level_reply(self, msg: SbLevelReply, t0: float) -> list[Envelope]:
        s, p = self.s, self.params
        assert self._sk is not None
        if msg.protocol != PROTOCOL:
            raise self._fail(f"unknown protocol {msg.protocol!r}")
        if msg.tree != s.tree or msg.level != s.level:
            raise self._fail(
                f"reply is for tree {msg.tree} level {msg.level}, expected tree {s.tree} level {s.level} (wrong step)"
            )
        if msg.key_fingerprint != self._sk.public_key.fingerprint:
            raise self._fail(
                f"reply computed under key {msg.key_fingerprint}, ours is {self._sk.public_key.fingerprint} (wrong key)"
            )
        self._apply_host_partitions(msg)
        expected = [c for c in s.flagged if can_split(self._tb.n[c], self._tb.H[c], p)]
        nodes = [int(v) for v in np.asarray(msg.nodes).tolist()]
        if nodes != expected:
            raise self._fail(f"host sent candidates for nodes {nodes}, expected {expected}")
        if not nodes:  # partitions only: the tree is complete
            self._finish_tree(t0)
            return self._next_trees([], time.perf_counter())
        host = self._decrypt_candidates(msg, nodes)
        splits = self._decide(s.level, nodes, host)
        env = self.send(self.peer, splits)
        s.stats["bytes_sent"] += env.size
        if s.pending or s.flagged:
            s.level += 1
            s.stats["guest_seconds"] += time.perf_counter() - t0
            return [env]
        self._finish_tree(t0)  # nothing more from the host for this tree: go on in the same step
        return self._next_trees([env], time.perf_counter())

    def _apply_host_partitions(self, msg: SbLevelReply) -> None:
        s, tb = self.s, self._tb
        got = [int(v) for v in np.asarray(msg.split_nodes).tolist()]
        want = [int(pd[0]) for pd in s.pending]
        if got != want:
            raise self._fail(f"host sent partitions for nodes {got}, expected {want}")
        at = [np.flatnonzero(s.node_of_row == nd) for nd in want]
        vat = [np.flatnonzero(s.node_of_val == nd) for nd in want]
        try:
            masks = unpack_bits(msg.train_bits, [a.size for a in at], "train_bits")
            vmasks = unpack_bits(msg.val_bits, [a.size for a in vat], "val_bits")
        except ValueError as exc:
            raise self._fail(f"partition bitmask has the wrong length: {exc}") from None
        msl = self.params.min_samples_leaf
        for (node, _sid, GL, HL), rows, vrows, go, vgo in zip(s.pending, at, vat, masks, vmasks):
            left_rows = rows[go]
            # the partition must be the one whose sums the guest decrypted
            if int(s.g[left_rows].sum()) != GL or int(s.h[left_rows].sum()) != HL:
                raise self._fail(f"host partition of node {node} does not match the chosen split's sums")
            n_left = int(go.sum())
            if n_left < msl or rows.size - n_left < msl:
                raise self._fail(f"host partition of node {node} leaves fewer than min_samples_leaf rows")
            lid, rid = tb.left[node], tb.right[node]
            tb.n[lid], tb.n[rid] = n_left, int(rows.size - n_left)
            s.node_of_row[left_rows] = lid
            s.node_of_row[rows[~go]] = rid
            s.node_of_val[vrows[vgo]] = lid
            s.node_of_val[vrows[~vgo]] = rid
        s.pending = []

    def _decrypt_candidates(self, msg: SbLevelReply, nodes: list[int]) -> dict[int, HostCandidates]:
        s = self.s
        assert self._sk is not None
        layout = self._layout()
        if int(msg.slots) != layout.slots:
            raise self._fail(f"host packed {msg.slots} slots per ciphertext, the layout has {layout.slots}")
        cand_node = np.asarray(msg.cand_node, dtype=np.int64)
        cand_id = np.asarray(msg.cand_id, dtype=np.uint64)
        if cand_node.shape != cand_id.shape or cand_node.ndim != 1:
            raise self._fail("candidate node/id arrays differ in length")
        lg = np.asarray(msg.level_group, dtype=np.int64)
        lc = np.asarray(msg.level_count, dtype=np.int64)
        if lg.ndim != 1 or lc.shape != lg.shape or lg.size > cand_id.size or (lg < 1).any() or (lc < 1).any():
            raise self._fail("categorical level groups/counts malformed (wrong length, or a group < 1 or count < 1)")
        n_thr = cand_id.size - lg.size  # the level entries come last
        group = np.concatenate([np.zeros(n_thr, dtype=np.int64), lg])
        count = np.concatenate([np.zeros(n_thr, dtype=np.int64), lc])
        if cand_node.size and not np.isin(cand_node, nodes).all():
            raise self._fail("candidates refer to nodes outside this level")
        pk = self._sk.public_key
        width = pk.ciphertext_bytes
        n_packed = -(-cand_node.size // layout.slots)
        if len(msg.packed) != n_packed * width:
            raise self._fail(
                f"packed ciphertexts are {len(msg.packed)} bytes, expected {n_packed} x {width} "
                "(wrong length or wrong key)"
            )
        cts = blob_to_mpz(msg.packed, width) if n_packed else []
        if outside_ciphertext_space(cts, pk):
            raise self._fail("a packed ciphertext is outside Z_{n^2} (wrong key)")
        t_dec = time.perf_counter()
        raw = self._sk.decrypt_raw(cts, workers=self._workers) if cts else []
        s.stats["decrypt_seconds"] += time.perf_counter() - t_dec
        try:
            GL, HL = layout.decode(signed_plaintexts(raw, pk), cand_node.size)
        except PackingError as exc:
            raise self._fail(str(exc)) from None
        s.stats["decryptions"] += len(cts)
        s.stats["host_candidates"] += int(cand_node.size)
        out: dict[int, HostCandidates] = {}
        for nd in nodes:
            sel = cand_node == nd
            out[nd] = (cand_id[sel], GL[sel], HL[sel], group[sel], count[sel])
        return out

    def _decide(self, level: int, nodes: list[int], host: dict[int, HostCandidates] | None) -> SbSplits:
        """Best split per node over own and host candidates; apply guest splits right away."""
        s, p, tb = self.s, self.params, self._tb
        B = self.B
        miss_bin = missing_bins(self.bins)
        pos = np.full(len(tb.left), -1, dtype=np.int64)
        pos[nodes] = np.arange(len(nodes))
        rows = np.flatnonzero(pos[s.node_of_row] >= 0)
        local = pos[s.node_of_row[rows]]
        hg, hh, cnt = node_histograms(self.Xb, rows, local, len(nodes), B, s.g, s.h)
        kinds, sids, lefts, rights, exp_l, exp_r = [], [], [], [], [], []
        level_ids: list[int] = []  # chosen left levels of categorical host splits
        n_levels = [0] * len(nodes)
        tbits: list[np.ndarray] = []
        vbits: list[np.ndarray] = []
        s.pending, s.flagged = [], []
        deeper = level + 1 < p.max_depth
        mcw2 = 2 * p.min_child_weight
        scale = 2.0**-p.precision_bits
        for k, node in enumerate(nodes):
            G, H = tb.G[node], tb.H[node]
            own = best_split(hg[k], hh[k], cnt[k], self.n_bins, miss_bin, G, H, p, self.bins.categorical)
            gg = -np.inf if own is None else own.gain
            cand = host.get(node) if host is not None else None
            hbest = None if cand is None else host_best_split(cand, G, H, p)
            gh = -np.inf if hbest is None else hbest[1]
            if hbest is not None and gh > gg and gh > 0:
                sid, gh, gl, hl, left_ids = hbest
                lid, rid = tb.split(node, OWNER_HOST, -1, float("nan"), sid, gh, (gl, hl, 0), (G - gl, H - hl, 0))
                s.pending.append([node, sid, gl, hl])
                kinds.append(KIND_HOST)
                sids.append(sid)
                level_ids += left_ids
                n_levels[k] = len(left_ids)
                # the host adds the row-count rule (it knows the partition first)
                fl = [deeper and hl * scale >= mcw2, deeper and (H - hl) * scale >= mcw2]
            elif own is not None and gg > 0:
                f, b, ml, lb = own.feature, own.bin, own.missing_left, own.left_bins
                gl, hl, nl = own.GL, own.HL, own.NL
                lid, rid = tb.split(
                    node,
                    OWNER_GUEST,
                    f,
                    float("nan") if lb is not None else self.bins.threshold(f, b),
                    0,
                    gg,
                    (gl, hl, nl),
                    (G - gl, H - hl, tb.n[node] - nl),
                    ml,
                    self.bins.levels(f, np.array(lb)).tolist() if lb is not None else None,
                )
                at = rows[local == k]
                vat = np.flatnonzero(s.node_of_val == node)
                go = binned_go_left(self.Xb[at, f], b, ml, int(miss_bin[f]), lb)
                vgo = binned_go_left(self.Xb_val[vat, f], b, ml, int(miss_bin[f]), lb)
                s.node_of_row[at[go]], s.node_of_row[at[~go]] = lid, rid
                s.node_of_val[vat[vgo]], s.node_of_val[vat[~vgo]] = lid, rid
                tbits.append(go)
                vbits.append(vgo)
                kinds.append(KIND_GUEST)
                sids.append(0)
                fl = [deeper and can_split(tb.n[c], tb.H[c], p) for c in (lid, rid)]
            else:
                kinds.append(KIND_LEAF)
                sids.append(0)
                lefts.append(-1)
                rights.append(-1)
                exp_l.append(False)
                exp_r.append(False)
                continue
            lefts.append(lid)
            rights.append(rid)
            exp_l.append(bool(fl[0]))
            exp_r.append(bool(fl[1]))
            s.flagged += [c for c, f_ in zip((lid, rid), fl) if f_]
        return SbSplits(
            protocol=PROTOCOL,
            tree=s.tree,
            level=level,
            nodes=np.array(nodes, dtype=np.int32),
            kind=np.array(kinds, dtype=np.int8),
            split_id=np.array(sids, dtype=np.uint64),
            left=np.array(lefts, dtype=np.int32),
            right=np.array(rights, dtype=np.int32),
            expand_left=np.array(exp_l, dtype=bool),
            expand_right=np.array(exp_r, dtype=bool),
            train_bits=pack_bits(tbits),
            val_bits=pack_bits(vbits),
            level_ids=np.array(level_ids, dtype=np.uint64),
            n_levels=np.array(n_levels, dtype=np.int32),
        )


def host_best_split(
    cand: HostCandidates, G: int, H: int, p: GBDTParams
) -> tuple[int, float, int, int, list[int]] | None:
    """The host's best candidate of a node: (split id, gain, G_L, H_L, left level ids) or None.

    Threshold candidates (group 0) are scored as they are; each categorical group's levels are
    ordered by ``G / (H + lambda)`` exactly as the reference orders a categorical column
    (:func:`protocols.gbdt.plain.categorical_order`, same integers, same level order) and its
    prefixes scored, ``min_samples_leaf`` applied with the level counts the host sent. A
    categorical split is named by one of its left level ids.
    """
    ids, cGL, cHL, group, count = cand
    best: tuple[int, float, int, int, list[int]] | None = None
    thr = np.flatnonzero(group == 0)
    i, gain = first_max(split_gains(cGL[thr], cHL[thr], G, H, p))
    if i >= 0:
        j = int(thr[i])
        best = (int(ids[j]), gain, int(cGL[j]), int(cHL[j]), [])
    for g in np.unique(group[group > 0]).tolist():
        at = np.flatnonzero(group == g)
        order = at[categorical_order(cGL[at], cHL[at], count[at], p)]
        if order.size < 2:
            continue
        gl, hl, nl = (np.cumsum(a[order])[:-1] for a in (cGL, cHL, count))
        ok = (nl >= p.min_samples_leaf) & (int(count[at].sum()) - nl >= p.min_samples_leaf)
        i, gain = first_max(np.where(ok, split_gains(gl, hl, G, H, p), -np.inf))
        if i >= 0 and (best is None or gain > best[1]):
            left = [int(v) for v in ids[order[: i + 1]]]
            best = (left[0], gain, int(gl[i]), int(hl[i]), left)
    return best
