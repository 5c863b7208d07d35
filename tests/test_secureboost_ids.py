"""SecureBoost: the host's split ids tell the guest nothing about the host's features or bins.

The guest (bank) sees, for every candidate split of a host node, an id it later names to pick a
split. If those ids encoded ``(tree, level, node, feature, bin)``, the bank would learn which host
feature and which bin every candidate (and every chosen split) is, without a single float on the
wire, so the float-pattern search of ``test_secureboost.test_nothing_plaintext_leaves_either_party``
cannot see it. Here the ids the guest received are checked against the host's own record of what
each id means (read from the host's state as it sent them): fresh across the whole training, all
63 bits balanced, and no better than chance at predicting the host feature on held-out candidates.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_secureboost as sb

from protocols.common import wire
from protocols.common.party import run_local
from protocols.secureboost import SecureBoostGuest, SecureBoostHost
from protocols.secureboost.messages import SbLevelReply


def _train_recording_host_meaning():
    data, _ = sb.make_data(n=240, seed=4, n_val=0)
    Xg, Xh, y = data
    cfg = sb.config(n_trees=3, max_depth=3)
    parties = {
        sb.GUEST: SecureBoostGuest(sb.GUEST, sb.HOST, Xg, y, cfg),
        sb.HOST: SecureBoostHost(sb.HOST, sb.GUEST, Xh, cfg),
    }
    meaning: dict[int, tuple[int, int]] = {}  # id -> (host feature, bin), from the host's own state

    def record(name, party):
        if name == sb.GUEST:  # the host has just sent a level reply: its state says what the ids mean
            s = parties[sb.HOST].s
            for i, f, b in zip(s.cand_id.tolist(), s.cand_feature.tolist(), s.cand_bin.tolist()):
                meaning.setdefault(int(i), (int(f), int(b)))
        return party

    transcript = run_local(parties, restart=record)
    sent = []
    for env in transcript.sent_by(sb.HOST):
        sent += wire.decode(env.payload, SbLevelReply).cand_id.tolist()
    return np.array(sent, dtype=np.uint64), meaning


def assert_opaque(ids: np.ndarray, feats: np.ndarray) -> None:
    """``ids`` (uint64) are fresh, bit-balanced and do not predict ``feats`` (the host feature of each)."""
    n = ids.size
    assert np.unique(ids).size == n, "an id was reused (for another node, level or tree)"
    # every one of the 63 bits set in about half of the ids (binomial sd = sqrt(n)/2; allow 5 sd)
    ones = ((ids[:, None] >> np.arange(63, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(np.int64).sum(axis=0)
    assert np.all(np.abs(ones - n / 2) < 5 * np.sqrt(n) / 2), f"biased id bits: {ones.tolist()}"
    # no byte of the id predicts the host feature better than chance on held-out candidates
    half = n // 2
    chance = np.bincount(feats[half:]).max() / (n - half)
    fallback = np.bincount(feats[:half]).argmax()
    for k in range(8):
        byte = ((ids >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.int64)
        vote: dict[int, list[int]] = {}
        for b, f in zip(byte[:half].tolist(), feats[:half].tolist()):
            vote.setdefault(b, []).append(f)
        majority = {b: np.bincount(fs).argmax() for b, fs in vote.items()}
        pred = np.array([majority.get(b, fallback) for b in byte[half:].tolist()])
        acc = float((pred == feats[half:]).mean())
        assert acc < chance + 0.15, f"id byte {k} predicts the host feature ({acc:.2f} vs chance {chance:.2f})"


def test_host_split_ids_are_fresh_random_and_say_nothing_about_feature_or_bin():
    ids, meaning = _train_recording_host_meaning()
    assert ids.size >= 400, "the fixture must give enough candidates for the statistics"
    assert set(ids.tolist()) <= set(meaning), "every id the guest saw is one the host recorded"
    assert_opaque(ids, np.array([meaning[int(i)][0] for i in ids.tolist()]))


@pytest.mark.parametrize("layout", ["feature-bin-low", "tree-level-node-feature-bin", "reused-per-feature-bin"])
def test_positive_control_structured_ids_are_caught(layout):
    """The check fails on ids that encode or repeat (feature, bin): the defects it is named after."""
    rng = np.random.default_rng(0)
    n = 600
    feats, bins = rng.integers(0, 4, n), rng.integers(0, 15, n)
    f64, b64, k = feats.astype(np.uint64), bins.astype(np.uint64), np.arange(n, dtype=np.uint64)
    if layout == "feature-bin-low":
        ids = (rng.integers(1, 1 << 40, n).astype(np.uint64) << np.uint64(16)) | (f64 << np.uint64(8)) | b64
    elif layout == "tree-level-node-feature-bin":
        ids = (
            ((k % 3) << np.uint64(48)) | ((k % 4) << np.uint64(40)) | (k << np.uint64(24)) | (f64 << np.uint64(8)) | b64
        )
    else:
        ids = (f64 * np.uint64(1000) + b64) * np.uint64(0x9E3779B97F4A7C15 >> 1)
    with pytest.raises(AssertionError):
        assert_opaque(ids, feats)
