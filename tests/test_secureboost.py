"""SecureBoost: lossless against the plaintext reference, private on the wire, strict about steps.

Everything runs in one process with 1024-bit insecure test keys and a few hundred rows; every
step round-trips both parties through ``to_state``/``from_state`` like the Flower nodes do.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from leak_support import NeedleIndex, feature_needles, label_needles

from protocols.common import wire
from protocols.common.party import Envelope, ProtocolError, run_local
from protocols.common.settings import ConfigError, describe
from protocols.gbdt.binning import fit_bins
from protocols.gbdt.params import GBDTParams
from protocols.gbdt.plain import OWNER_GUEST, OWNER_HOST, PlainGBDT
from protocols.paillier import generate_keypair
from protocols.secureboost import (
    SecureBoostConfig,
    SecureBoostConfigError,
    SecureBoostGuest,
    SecureBoostGuestModel,
    SecureBoostHost,
    SecureBoostHostModel,
    SecureBoostScoringGuest,
    SecureBoostScoringHost,
    predict_local,
)
from protocols.secureboost.kernels import GHLayout, PackingError
from protocols.secureboost.messages import SbFinish, SbGradients, SbLevelReply, SbSplits

GUEST, HOST = "bank", "centre"


def make_data(n: int = 360, seed: int = 0, n_val: int = 120):
    rng = np.random.default_rng(seed)
    m = n + n_val
    Xg = rng.normal(size=(m, 3))
    Xh = np.column_stack(
        [rng.normal(size=m), rng.normal(size=m), rng.integers(0, 4, size=m).astype(float), rng.exponential(size=m)]
    )
    logit = 1.2 * Xg[:, 0] - 1.5 * Xh[:, 1] + 0.8 * (Xh[:, 2] >= 2) * Xg[:, 1] + 0.5 * np.log1p(Xh[:, 3])
    y = (rng.random(m) < 1 / (1 + np.exp(-logit))).astype(int)
    return (Xg[:n], Xh[:n], y[:n]), (Xg[n:], Xh[n:], y[n:])


def config(**kw) -> SecureBoostConfig:
    base = dict(n_trees=4, max_depth=3, max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1)
    base.update(kw)
    return SecureBoostConfig(**base)


def train(cfg: SecureBoostConfig, train_data, val_data=None, *, restart: bool = True):
    Xg, Xh, y = train_data
    Xgv = Xhv = yv = None
    if val_data is not None:
        Xgv, Xhv, yv = val_data
    parties = {
        GUEST: SecureBoostGuest(GUEST, HOST, Xg, y, cfg, X_val=Xgv, y_val=yv),
        HOST: SecureBoostHost(HOST, GUEST, Xh, cfg, X_val=Xhv),
    }

    def rt(name, party):
        if name == GUEST:
            return SecureBoostGuest.from_state(party.to_state(), Xg, y, Xgv, yv)
        return SecureBoostHost.from_state(party.to_state(), Xh, Xhv)

    transcript = run_local(parties, restart=rt if restart else None)
    return parties[GUEST], parties[HOST], transcript


def reference(cfg: SecureBoostConfig, train_data, val_data=None) -> PlainGBDT:
    Xg, Xh, y = train_data
    kw = {}
    if val_data is not None:
        kw = dict(X_val=np.hstack(val_data[:2]), y_val=val_data[2])
    return PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(
        np.hstack([Xg, Xh]), y, n_guest_features=Xg.shape[1], **kw
    )


def assert_same_trees(guest: SecureBoostGuest, host: SecureBoostHost, ref: PlainGBDT) -> None:
    gm, hm = guest.model, host.model
    assert len(gm.trees) == len(ref.trees)
    for t, (a, b) in enumerate(zip(gm.trees, ref.trees)):
        feats, thr = a.feature.copy(), a.threshold.copy()
        host_nodes = np.flatnonzero(a.owner == OWNER_HOST)
        assert np.all(a.feature[host_nodes] == -1) and np.all(np.isnan(a.threshold[host_nodes]))
        for k in host_nodes:
            feats[k], thr[k] = hm.lookup(int(a.split_id[k]))
        assert a.owner.tolist() == b.owner.tolist(), f"tree {t}: owners differ"
        assert feats.tolist() == b.feature.tolist(), f"tree {t}: split features differ"
        np.testing.assert_array_equal(thr, b.threshold, err_msg=f"tree {t}: thresholds differ")
        np.testing.assert_array_equal(a.value, b.value, err_msg=f"tree {t}: leaf values differ")
        np.testing.assert_array_equal(a.gain, b.gain, err_msg=f"tree {t}: gains differ")


# ---------------------------------------------------------------------------------------------
# losslessness
# ---------------------------------------------------------------------------------------------
def test_federated_trees_identical_to_plaintext_reference():
    data, val = make_data()
    cfg = config()
    guest, host, transcript = train(cfg, data, val)
    assert guest.finished and host.finished
    ref = reference(cfg, data, val)
    assert_same_trees(guest, host, ref)
    # both sides really split: otherwise the test would not exercise the protocol
    owners = np.concatenate([t.owner for t in guest.model.trees])
    assert (owners == OWNER_HOST).sum() >= 3 and (owners == OWNER_GUEST).sum() >= 3
    Xt = np.hstack(val[:2])
    np.testing.assert_array_equal(predict_local(guest.model, host.model, *val[:2]), ref.predict_proba(Xt))
    h = guest.history
    assert [r["tree"] for r in h] == [0, 1, 2, 3]
    assert all(r["decryptions"] > 0 for r in h)
    for r, rr in zip(h, ref.history):
        assert r["val_loss"] == rr["val_loss"] and r["train_loss"] == rr["train_loss"]
    # steps per tree: gradients + one round trip per level (+ final partitions)
    assert len(transcript.steps) <= cfg.n_trees * (2 * cfg.max_depth + 2) + 1


@pytest.mark.parametrize(
    "kw",
    [
        dict(min_samples_leaf=25, gamma=0.3, min_child_weight=2.0, reg_lambda=3.0, max_depth=4, learning_rate=0.5),
        dict(complete_secure=True, n_trees=3),
    ],
)
def test_hyper_parameters_and_complete_secure_match_reference(kw):
    data, _ = make_data(seed=1)
    cfg = config(**kw)
    guest, host, transcript = train(cfg, data)
    ref = reference(cfg, data)
    assert_same_trees(guest, host, ref)
    trees = guest.model.trees
    if cfg.complete_secure:
        assert (trees[0].owner == OWNER_HOST).sum() == 0 and (trees[0].owner == OWNER_GUEST).sum() > 0
        first = transcript.steps[0]
        assert [wire.decode(e.payload, SbGradients).tree for e in first if e.kind == "SbGradients"] == [1]
        assert host.model.trees.min() >= 1
    else:
        leaves = np.concatenate([t.n_samples[t.owner == 0] for t in trees])
        assert leaves.min() >= cfg.min_samples_leaf


def test_early_stopping_truncates_both_parts_like_reference():
    data, val = make_data(n=300, seed=3)
    rng = np.random.default_rng(9)
    val = (val[0], val[1], rng.integers(0, 2, size=val[2].size))  # labels unrelated to X: stops early
    cfg = config(n_trees=8, early_stopping_rounds=2, learning_rate=0.8)
    guest, host, _ = train(cfg, data, val)
    ref = reference(cfg, data, val)
    assert len(ref.trees) < len(ref.history) <= cfg.n_trees
    assert len(guest.history) == len(ref.history)
    assert_same_trees(guest, host, ref)
    used = guest.model.host_split_ids
    assert set(host.model.split_ids.tolist()) == set(used.tolist())


def test_default_credit_subset_lossless_and_sane():
    # scikit-learn and the bundled data are dependencies: their absence is a failure, not a skip
    from fedcredit.data.default_credit import load_vertical

    bank, centre = load_vertical("all")
    pos = {u: i for i, u in enumerate(centre.ids)}
    idx = np.array([pos[u] for u in bank.ids])
    Xg, Xh, y = bank.features, centre.features[idx], np.asarray(bank.labels)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))[:2400]
    tr, te = rows[:1800], rows[1800:]
    cfg = config(n_trees=4, max_depth=3, max_bins=32)
    guest, host, _ = train(cfg, (Xg[tr], Xh[tr], y[tr]), restart=False)
    ref = reference(cfg, (Xg[tr], Xh[tr], y[tr]))
    p_fed = predict_local(guest.model, host.model, Xg[te], Xh[te])
    p_ref = ref.predict_proba(np.hstack([Xg[te], Xh[te]]))
    from protocols.gbdt.plain import roc_auc

    assert abs(roc_auc(y[te], p_fed) - roc_auc(y[te], p_ref)) <= 0.003
    assert roc_auc(y[te], p_fed) > 0.7


# ---------------------------------------------------------------------------------------------
# privacy: capture every envelope
# ---------------------------------------------------------------------------------------------
def _float_patterns(values: np.ndarray) -> set[bytes]:
    """float64 byte patterns (both byte orders) of every distinct non-zero value.

    8-byte patterns cannot match random ciphertext bytes by chance (p ~ 2^-64 per position);
    4-byte float32 patterns would, so they are not used.
    """
    v = np.unique(np.asarray(values, dtype=np.float64).ravel())
    v = v[(v != 0) & np.isfinite(v)]
    return {x.tobytes() for x in v} | {x.astype(">f8").tobytes() for x in v}


def test_nothing_plaintext_leaves_either_party():
    data, val = make_data(n=240, seed=5, n_val=60)
    Xg, Xh, y = data
    cfg = config(n_trees=3)
    guest, host, transcript = train(cfg, data, val)
    host_sent = transcript.sent_by(HOST)
    guest_sent = transcript.sent_by(GUEST)
    assert {e.kind for e in host_sent} == {"SbLevelReply"}
    assert {e.kind for e in guest_sent} == {"SbGradients", "SbSplits", "SbFinish"}

    # host: no feature value or threshold, in any encoding, anywhere in what it sends
    bins = fit_bins(Xh, cfg.max_bins)
    secrets_h = _float_patterns(Xh) | _float_patterns(np.concatenate(bins.thresholds)) | _float_patterns(val[1])
    for env in host_sent:
        assert not any(p in env.payload for p in secrets_h), "a host feature value/threshold left the host"
        msg = wire.decode(env.payload, SbLevelReply)
        for f in dataclasses.fields(msg):
            v = getattr(msg, f.name)
            assert not (isinstance(v, np.ndarray) and v.dtype.kind == "f"), f"float array {f.name} from host"
        # partitions are bitmasks over node rows: the documented leakage, nothing per-row beyond one bit
        assert msg.train_bits.dtype == np.uint8 and msg.val_bits.dtype == np.uint8
        assert len(msg.packed) == -(-msg.cand_id.size // msg.slots) * guest.public_key.ciphertext_bytes

    # every message, every encoding of tests/leak_support.py: host features (training and validation,
    # raw and at fixed point), host thresholds, guest labels; with a planted positive control
    thresholds = np.concatenate(bins.thresholds)
    index = NeedleIndex(
        feature_needles(HOST, Xh, "host features")
        + feature_needles(HOST, val[1], "host validation features")
        + feature_needles(HOST, thresholds[: thresholds.size // 3 * 3].reshape(-1, 3), "host thresholds")
        + label_needles(GUEST, y, "training order")
    )
    found = [(e.kind, n.what) for e in host_sent + guest_sent for n in index.find(e.payload)]
    assert not found, found[:5]
    probe = host_sent[0].payload
    for leak in (Xh[:2].ravel().astype(np.float32).tobytes(), np.packbits(y[5:150].astype(bool)).tobytes()):
        assert index.find(probe[:64] + leak + probe[64:]), "positive control: a planted leak was not found"

    # guest: no label, gradient or hessian in plaintext; per-sample fields are ciphertexts
    sk = guest._sk
    layout = GHLayout(cfg.precision_bits, len(y), sk.public_key.bits)
    label_bits = np.packbits(y.astype(bool)).tobytes()
    for env in guest_sent:
        assert label_bits not in env.payload
        if env.kind == "SbGradients":
            msg = wire.decode(env.payload, SbGradients)
            width = sk.public_key.ciphertext_bytes
            assert len(msg.ciphertexts) == len(y) * width
            cts = [int.from_bytes(msg.ciphertexts[i : i + width], "big") for i in range(0, len(msg.ciphertexts), width)]
            n = int(sk.public_key.n)
            # randomised (a bare g^m = 1 + m n would be == 1 mod n) and all distinct
            assert all(c % n != 1 for c in cts) and len(set(cts)) == len(cts)
            # they decrypt to the packed g/h of this tree: the per-sample values travel encrypted only
            from protocols.secureboost.kernels import blob_to_mpz

            plain = [int(m - n) if m > n // 2 else int(m) for m in sk.decrypt_raw(blob_to_mpz(msg.ciphertexts, width))]
            per_row = [layout.decode([v], 1) for v in plain]
            g_int = np.array([gh[0][0] for gh in per_row])
            h_int = np.array([gh[1][0] for gh in per_row])
            assert (h_int > 0).all() and np.abs(g_int).max() > 0
            scale = 2.0**-cfg.precision_bits
            secrets_g = (
                _float_patterns(g_int * scale)
                | _float_patterns(h_int * scale)
                | {int(v).to_bytes(8, "little", signed=True) for v in np.concatenate([g_int, h_int])[:100]}
            )
            assert not any(b in env.payload for b in secrets_g)
        else:
            cls = SbSplits if env.kind == "SbSplits" else SbFinish
            msg = wire.decode(env.payload, cls)
            for f in dataclasses.fields(msg):
                v = getattr(msg, f.name)
                if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                    assert cls is SbFinish and f.name == "gains"  # aggregate split gains, documented
                if isinstance(v, np.ndarray) and v.size >= len(y) // 2:
                    pytest.fail(f"{cls.__name__}.{f.name} has a per-sample length")
    # the guest's model part holds no host threshold, the host's part no tree structure or leaf value
    for t in guest.model.trees:
        assert np.isnan(t.threshold[t.owner == OWNER_HOST]).all()
    assert {f.name for f in dataclasses.fields(SecureBoostHostModel)} == {
        "n_features",
        "split_ids",
        "features",
        "thresholds",
        "trees",
        "missing_left",  # per split id, the learned direction of a missing value (issue 17)
        "cat_start",  # per split id, its left level codes if it splits a categorical column (issue 17)
        "cat_count",
        "cat_levels",
    }


def test_scoring_protocol_both_modes_private_and_exact():
    data, val = make_data(seed=2)
    cfg = config(n_trees=3)
    guest, host, _ = train(cfg, data)
    gm = SecureBoostGuestModel.from_bytes(guest.model.to_bytes())
    hm = SecureBoostHostModel.from_bytes(host.model.to_bytes())
    expected = predict_local(guest.model, host.model, *val[:2])
    ref = reference(cfg, data).predict_proba(np.hstack(val[:2]))
    np.testing.assert_array_equal(expected, ref)
    steps = {}
    for mode in ("cross", "pairs"):
        parties = {
            GUEST: SecureBoostScoringGuest(GUEST, HOST, gm, val[0], mode=mode),
            HOST: SecureBoostScoringHost(HOST, GUEST, hm, val[1]),
        }

        def rt(name, p, mode=mode):
            if name == GUEST:
                return SecureBoostScoringGuest.from_state(p.to_state(), gm, val[0])
            return SecureBoostScoringHost.from_state(p.to_state(), hm, val[1])

        tr = run_local(parties, restart=rt)
        np.testing.assert_array_equal(parties[GUEST].scores, expected)
        steps[mode] = len(tr.steps)
        secrets_h = _float_patterns(val[1]) | _float_patterns(hm.thresholds)
        for env in tr.sent_by(HOST):
            assert env.kind == "SbSealedDirectionReply"  # sealed to the guest (#13)
            assert not any(p in env.payload for p in secrets_h)
        for env in tr.sent_by(GUEST):
            assert env.kind in ("SbScoringKey", "SbDirectionQuery", "SbScoringDone")
            assert not any(p in env.payload for p in _float_patterns(val[0]))
    assert steps["cross"] == 3 and steps["pairs"] > steps["cross"]
    # a scoring state is bound to the rows it scores
    scorer = SecureBoostScoringGuest(GUEST, HOST, gm, val[0])
    scorer.start()
    with pytest.raises(ProtocolError, match="digest"):
        SecureBoostScoringGuest.from_state(scorer.to_state(), gm, val[0] + 1.0)


def test_feature_importance_per_party():
    data, _ = make_data(seed=4)
    cfg = config(n_trees=3)
    guest, host, _ = train(cfg, data)
    gi, hi = guest.feature_importance(), host.feature_importance()
    trees = guest.model.trees
    n_host = sum(int((t.owner == OWNER_HOST).sum()) for t in trees)
    n_guest = sum(int((t.owner == OWNER_GUEST).sum()) for t in trees)
    assert sum(gi["guest"]["split_count"]) == n_guest and gi["host"]["split_count"] == n_host
    assert sum(hi["split_count"]) == n_host and len(hi["split_count"]) == data[1].shape[1]
    assert sum(hi["gain"]) == pytest.approx(gi["host"]["gain"])
    # the informative host feature (column 1) must rank first
    assert int(np.argmax(hi["gain"])) == 1
    cfg2 = config(n_trees=2, share_host_gains=False)
    _, host2, tr2 = train(cfg2, data)
    assert host2.feature_importance()["gain"] is None
    fin = [e for e in tr2.sent_by(GUEST) if e.kind == "SbFinish"][0]
    assert wire.decode(fin.payload, SbFinish).gains.size == 0


# ---------------------------------------------------------------------------------------------
# refusal of wrong steps, lengths and keys
# ---------------------------------------------------------------------------------------------
def _started(cfg=None, data=None):
    data = data or make_data(n=120, seed=6, n_val=0)[0]
    cfg = cfg or config(n_trees=2, max_depth=2)
    Xg, Xh, y = data
    g = SecureBoostGuest(GUEST, HOST, Xg, y, cfg)
    h = SecureBoostHost(HOST, GUEST, Xh, cfg)
    first = g.start()
    return g, h, first, data, cfg


def test_wrong_step_is_refused():
    g, h, first, data, cfg = _started()
    reply = h.receive(first)
    # host expects SbSplits now; gradients again is a wrong step
    with pytest.raises(ProtocolError, match="wrong step"):
        h.receive(first)
    splits = g.receive(reply)
    # replaying the same level reply to the guest
    with pytest.raises(ProtocolError, match="wrong step|expects none|level"):
        g.receive(reply)
    # a message from someone else
    h2 = SecureBoostHost.from_state(h.to_state(), data[1])
    with pytest.raises(ProtocolError, match="expected only"):
        h2.receive([Envelope("mallory", HOST, splits[0].payload)])
    # the wrong message type for the guest
    g3, _, first3, _, _ = _started()
    with pytest.raises(ProtocolError, match="SbLevelReply"):
        g3.receive([Envelope(HOST, GUEST, first3[0].payload)])


def test_wrong_length_is_refused():
    Xg, Xh, y = make_data(n=120, seed=6, n_val=0)[0]
    # the guest holds the strongest column (Xh[:, 1]) so the root is a guest split and its bitmask is sent
    g, h, first, data, cfg = _started(data=(Xh, Xg, y))
    short = SecureBoostHost(HOST, GUEST, data[1][:-1], cfg)
    with pytest.raises(ProtocolError, match="wrong length"):
        short.receive(first)
    msg = wire.decode(first[0].payload, SbGradients)
    truncated = dataclasses.replace(msg, ciphertexts=msg.ciphertexts[:-5])
    with pytest.raises(ProtocolError, match="wrong length"):
        h.receive([Envelope(GUEST, HOST, wire.encode(truncated))])
    reply = h.receive(first)
    splits = wire.decode(g.receive(reply)[0].payload, SbSplits)
    assert (splits.kind == 1).any(), "precondition: a guest split, whose row bitmask the host checks"
    bad = dataclasses.replace(splits, train_bits=splits.train_bits[:-1])
    with pytest.raises(ProtocolError, match="wrong length"):
        SecureBoostHost.from_state(h.to_state(), data[1]).receive([Envelope(GUEST, HOST, wire.encode(bad))])
    bad_nodes = dataclasses.replace(splits, kind=splits.kind[:0])
    with pytest.raises(ProtocolError, match="wrong length"):
        SecureBoostHost.from_state(h.to_state(), data[1]).receive([Envelope(GUEST, HOST, wire.encode(bad_nodes))])
    rep = wire.decode(reply[0].payload, SbLevelReply)
    g2, h2, first2, _, _ = _started(cfg, data)
    rep2 = wire.decode(h2.receive(first2)[0].payload, SbLevelReply)
    cut = dataclasses.replace(rep2, packed=rep2.packed[:-1])
    with pytest.raises(ProtocolError, match="wrong length"):
        g2.receive([Envelope(HOST, GUEST, wire.encode(cut))])
    assert rep.slots > 1


def test_wrong_key_is_refused():
    g, h, first, data, cfg = _started()
    msg = wire.decode(first[0].payload, SbGradients)
    reply = h.receive(first)
    # the guest refuses a reply computed under another key
    rep = wire.decode(reply[0].payload, SbLevelReply)
    forged = dataclasses.replace(rep, key_fingerprint="0" * 16)
    g_copy = SecureBoostGuest.from_state(g.to_state(), *data[::2])
    with pytest.raises(ProtocolError, match="wrong key"):
        g_copy.receive([Envelope(HOST, GUEST, wire.encode(forged))])
    # candidates packed under another key decode out of bounds
    pk2, sk2 = generate_keypair(1024, insecure_test_key=True)
    other = pk2.encrypt(list(range(1, 1 + len(rep.packed) // sk2.public_key.ciphertext_bytes))).to_bytes()
    if len(other) == len(rep.packed):
        swapped = dataclasses.replace(rep, packed=other)
        with pytest.raises(ProtocolError, match="wrong key|out of bounds|beyond"):
            SecureBoostGuest.from_state(g.to_state(), *data[::2]).receive([Envelope(HOST, GUEST, wire.encode(swapped))])
    # the host refuses a new key in the middle of training
    while True:
        out = g.receive(reply)
        grads = [e for e in out if e.kind == "SbGradients"]
        if grads:
            break
        reply = h.receive(out)
        if not reply:
            break
    rekeyed = dataclasses.replace(
        wire.decode(grads[0].payload, SbGradients),
        public_key=pk2.to_bytes(),
        ciphertexts=pk2.encrypt(list(range(msg.n_rows))).to_bytes(),
    )
    h.receive([e for e in out if e.kind == "SbSplits"])
    with pytest.raises(ProtocolError, match="wrong key"):
        h.receive([Envelope(GUEST, HOST, wire.encode(rekeyed))])


def test_small_keys_refused_without_flag_and_state_bound_to_data():
    data, _ = make_data(n=100, seed=7, n_val=0)
    g, h, first, _, cfg = _started(config(n_trees=1, max_depth=1, insecure_test_key=True), data)
    strict = SecureBoostHost(HOST, GUEST, data[1], dataclasses.replace(cfg, key_bits=2048, insecure_test_key=False))
    with pytest.raises(ProtocolError, match="refus|bits"):
        strict.receive(first)
    with pytest.raises(ProtocolError, match="digest"):
        SecureBoostGuest.from_state(g.to_state(), data[0] + 1.0, data[2])
    with pytest.raises(ProtocolError, match="_HostState"):
        SecureBoostHost.from_state(g.to_state(), data[1])


def test_packing_layout_round_trip_and_overflow():
    lay = GHLayout(precision_bits=32, max_rows=30_000, key_bits=2048)
    assert lay.slots >= 20 and lay.slot_bits <= 100
    rng = np.random.default_rng(0)
    g = rng.integers(-(1 << 32), 1 << 32, size=50)
    h = rng.integers(0, 1 << 30, size=50)
    x = [int(v) for v in lay.encode(g, h)]
    packed = sum(v << (lay.slot_bits * i) for i, v in enumerate(x[: lay.slots]))
    G, H = lay.decode([packed], lay.slots)
    assert G.tolist() == g[: lay.slots].tolist() and H.tolist() == h[: lay.slots].tolist()
    with pytest.raises(PackingError):
        lay.decode([packed + (1 << (lay.slot_bits * lay.slots + 3))], lay.slots)
    with pytest.raises(PackingError):
        lay.encode(np.array([1 << 33]), np.array([0]))


# ---------------------------------------------------------------------------------------------
# configuration and the parallel path
# ---------------------------------------------------------------------------------------------
def test_config_from_section_and_scenario_file():
    cfg = SecureBoostConfig.from_section({"n_trees": 5, "max_depth": 4, "complete_secure": True})
    assert cfg.n_trees == 5 and cfg.key_bits == 2048
    assert issubclass(SecureBoostConfigError, ConfigError)
    with pytest.raises(SecureBoostConfigError, match=r"unknown key\(s\) \['n_tree'\]"):
        SecureBoostConfig.from_section({"n_tree": 5})
    with pytest.raises(SecureBoostConfigError, match=r"\[secureboost\] max_depth = 2.5: must be an integer"):
        SecureBoostConfig.from_section({"max_depth": 2.5})
    with pytest.raises(SecureBoostConfigError, match=r"\[secureboost\] max_depth = 0: must be >= 1"):
        SecureBoostConfig.from_section({"max_depth": 0})
    with pytest.raises(SecureBoostConfigError, match=r"\[secureboost\] key_bits = 1024: must be >= 2048"):
        SecureBoostConfig.from_section({"key_bits": 1024})
    with pytest.raises(SecureBoostConfigError, match=r"\[secureboost\] scoring_mode = 'all'"):
        SecureBoostConfig.from_section({"scoring_mode": "all"})
    # the tree hyper-parameters are declared once (GBDTParams) and documented with the rest
    params = cfg.gbdt_params()
    assert type(params) is GBDTParams and params.max_depth == 4 and params.complete_secure
    rows = {r.key: r for r in describe(SecureBoostConfig)}
    assert set(rows) == {f.name for f in dataclasses.fields(SecureBoostConfig)}
    assert all(r.doc for r in rows.values()) and rows["max_depth"].rule == ">= 1, <= 16"
    from pathlib import Path

    from fedcredit.config import load

    path = Path(__file__).resolve().parents[1] / "configs" / "secureboost.toml"
    scenario = load(path)
    assert scenario.mode == "secureboost"
    assert {p.role for p in scenario.parties} == {"bank", "credit_centre"}
    sb = SecureBoostConfig.from_section(scenario.section("secureboost"))
    assert sb.key_bits >= 2048 and not sb.insecure_test_key


def test_parallel_path_gives_identical_trees(monkeypatch):
    import os

    import protocols.secureboost.host as host_mod
    from protocols.common import parallel

    monkeypatch.setattr(host_mod, "PARALLEL_MIN_MULTS", 0)
    monkeypatch.setattr(host_mod, "PARALLEL_MIN_SHIFTS", 0)
    # the subject is the pool: record that every parallel request got one, whose workers are other processes
    pools: list = []
    orig = parallel.process_pool

    def spy(workers):
        pool = orig(workers)
        pools.append(pool)
        return pool

    monkeypatch.setattr(parallel, "process_pool", spy)
    data, _ = make_data(n=200, seed=8, n_val=0)
    cfg = config(n_trees=2, n_workers=2)
    guest, host, _ = train(cfg, data, restart=False)
    assert pools and all(p is not None for p in pools), "the process pool did not start: serial fallback"
    assert pools[0].submit(os.getpid).result() != os.getpid()
    assert_same_trees(guest, host, reference(cfg, data))


@pytest.mark.slow
def test_default_credit_full_lossless_vs_reference_and_sklearn():
    """The issue's target: bundled default_credit, 30 trees, depth 3, 32 bins (~1 min)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fedcredit.data.default_credit import load_vertical
    from protocols.gbdt.plain import roc_auc

    def aligned(part):
        bank, centre = load_vertical(part)
        pos = {u: i for i, u in enumerate(centre.ids)}
        idx = np.array([pos[u] for u in bank.ids])
        return bank.features, centre.features[idx], np.asarray(bank.labels)

    Xg, Xh, y = aligned("train")
    Xgt, Xht, yt = aligned("test")
    cfg = config(n_trees=30, max_depth=3, max_bins=32, n_workers=0)
    guest, host, _ = train(cfg, (Xg, Xh, y), restart=False)
    ref = reference(cfg, (Xg, Xh, y))
    auc_fed = roc_auc(yt, predict_local(guest.model, host.model, Xgt, Xht))
    auc_ref = roc_auc(yt, ref.predict_proba(np.hstack([Xgt, Xht])))
    assert abs(auc_fed - auc_ref) <= 0.003
    sk = HistGradientBoostingClassifier(
        max_iter=30, max_depth=3, max_bins=32, learning_rate=0.3, early_stopping=False
    ).fit(np.hstack([Xg, Xh]), y)
    auc_sk = roc_auc(yt, sk.predict_proba(np.hstack([Xgt, Xht]))[:, 1])
    assert auc_fed > 0.77 and abs(auc_fed - auc_sk) < 0.01


def test_on_tree_callback_reports_every_tree():
    data, val = make_data(n=150, seed=11, n_val=40)
    cfg = config(n_trees=2, max_depth=2)
    seen: list[dict] = []
    g = SecureBoostGuest(GUEST, HOST, data[0], data[2], cfg, X_val=val[0], y_val=val[2], on_tree=seen.append)
    h = SecureBoostHost(HOST, GUEST, data[1], cfg, X_val=val[1])
    run_local({GUEST: g, HOST: h})
    assert [r["tree"] for r in seen] == [0, 1] and all("val_auc" in r and "decryptions" in r for r in seen)
