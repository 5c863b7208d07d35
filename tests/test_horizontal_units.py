"""Horizontal building blocks without Flower: settings, models, validation, CKKS, key hand-over, DP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcredit import models
from fedcredit.config import ConfigError, loads
from fedcredit.horizontal import aggregation as agg
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import dp as hdp
from fedcredit.horizontal import keyshare
from fedcredit.horizontal.settings import CkksSettings, from_scenario, parse

BANKS3 = "".join(f'[parties.bank_{c}]\nrole = "bank"\ndata = "default_credit"\n' for c in "abc")


def scenario(extra: str = "", banks: str = BANKS3):
    return loads(f'[run]\nname = "t"\nmode = "horizontal"\n{banks}\n[horizontal]\n{extra}')


# -- settings ----------------------------------------------------------------------------
def test_settings_defaults_and_faults():
    s = from_scenario(
        scenario('aggregation = "secagg+"\n[[horizontal.simulate_faults]]\nparty = "bank_b"\nround = 2\nkind = "nan"\n')
    )
    assert s.aggregation == "secagg+" and s.rounds == 5
    assert s.fault_for("bank_b", 2) == "nan" and s.fault_for("bank_b", 1) == "" and s.fault_for("bank_a", 2) == ""


@pytest.mark.parametrize(
    "extra, needle",
    [
        ('aggregation = "paillier"', "aggregation"),
        ("rounds = 0", "rounds"),
        ("lr = -1.0", "lr"),
        ("typo_key = 1", "typo_key"),
        ('[horizontal.dp]\nkind = "central"', "ckks"),  # only with aggregation = ckks, see below
        ("[horizontal.ckks]\nscale_bits = 55", "scale_bits"),
        ('[[horizontal.simulate_faults]]\nparty = "bank_z"\nround = 1\nkind = "nan"', "bank_z"),
    ],
)
def test_settings_errors_name_the_key(extra, needle):
    if "central" in extra:
        extra = 'aggregation = "ckks"\n' + extra
    with pytest.raises(ConfigError, match=needle):
        from_scenario(scenario(extra))


def test_secagg_needs_three_banks():
    two = "".join(f'[parties.bank_{c}]\nrole = "bank"\n' for c in "ab")
    with pytest.raises(ConfigError, match="3 banks"):
        from_scenario(scenario('aggregation = "secagg+"', banks=two))
    # an empty section is valid and gives exactly the declared defaults (a dataclass is always truthy)
    from fedcredit.horizontal.settings import HorizontalSettings

    assert parse({}) == HorizontalSettings()


# -- models ------------------------------------------------------------------------------
def _toy(n=2000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = np.linspace(-1, 1, d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w - 1)))).astype(np.int8)
    return x, y


@pytest.mark.parametrize("kind, opt", [("lr", "sgd"), ("mlp", "adam")])
def test_models_learn(kind, opt):
    from fedcredit.metrics import auc

    x, y = _toy()
    m = models.build_model(models.ModelSpec(kind, x.shape[1], (8,)), seed=1)
    before = auc(y, models.predict_proba(m, x))
    models.train(
        m,
        x,
        y,
        models.TrainConfig(
            epochs=15, lr=0.02, optimizer=opt, batch_size=500, pos_weight=models.pos_weight(y, "balanced")
        ),
    )
    oracle = auc(y, x @ np.linspace(-1, 1, x.shape[1]))  # the true score of _toy
    after = auc(y, models.predict_proba(m, x))
    assert after > before and after > oracle - 0.01


def test_fedprox_pulls_towards_global_and_weights_roundtrip():
    x, y = _toy()
    spec = models.ModelSpec("lr", x.shape[1])
    start = models.get_weights(models.build_model(spec, seed=3))
    dist = []
    for mu in (0.0, 5.0):
        m = models.build_model(spec)
        models.set_weights(m, start)
        models.train(m, x, y, models.TrainConfig(epochs=2, lr=0.05, mu=mu))
        dist.append(sum(float(np.sum((a - b) ** 2)) for a, b in zip(models.get_weights(m), start)))
    assert dist[1] < 0.5 * dist[0]
    with pytest.raises(ValueError, match="shape"):
        models.set_weights(models.build_model(spec), [np.zeros((1, 4)), np.zeros(1)])
    assert models.pos_weight(np.array([0, 0, 0, 1]), "balanced") == 3.0


def test_same_seed_same_initial_model():
    spec = models.ModelSpec("mlp", 4, (3,))
    a = models.get_weights(models.build_model(spec, seed=5))
    b = models.get_weights(models.build_model(spec, seed=5))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


# -- validation and aggregation ---------------------------------------------------------
SHAPES = [(1, 3), (1,)]


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ([np.array([[0.1, np.nan, 0.2]]), np.zeros(1)], "NaN"),
        ([np.array([[0.1, 0.0, 0.2]]), np.array([np.inf])], "Inf"),
        ([np.zeros((1, 2)), np.zeros(1)], "wrong shape"),
        ([np.zeros((1, 3))], "wrong shape"),
        ([np.array([[0.1, 99.0, 0.2]]), np.zeros(1)], "out of range"),
    ],
)
def test_validate_update_rejects_with_bank_named(arrays, needle):
    with pytest.raises(agg.UpdateRejected, match=needle) as info:
        agg.validate_update("bank_q", arrays, SHAPES, bound=8.0)
    assert info.value.party == "bank_q" and "bank_q" in str(info.value)


def test_validate_update_applies_secagg_scale():
    arrays = [np.array([[10.0, 0.0, 0.0]]), np.zeros(1)]
    agg.validate_update("b", arrays, SHAPES, bound=8.0, scale=0.5)  # 10 * 0.5 <= 8
    with pytest.raises(agg.UpdateRejected):
        agg.validate_update("b", arrays, SHAPES, bound=8.0, scale=0.9)


def test_weighted_average_and_flatten():
    ups = [[np.array([1.0, 2.0]), np.array([0.0])], [np.array([3.0, 6.0]), np.array([4.0])]]
    avg = agg.weighted_average(ups, [1, 3])
    assert np.allclose(avg[0], [2.5, 5.0]) and np.allclose(avg[1], [3.0])
    flat = agg.flatten(ups[0])
    back = agg.unflatten(flat, [(2,), (1,)])
    assert np.array_equal(back[0], ups[0][0])
    with pytest.raises(ValueError):
        agg.unflatten(flat, [(4,)])


def test_auto_secagg_parameters_avoid_overflow():
    for k in (3, 5, 10, 50, 200):
        q = agg.auto_quantization_range(k, 2**32)
        assert k * q <= 2**31 and q <= 2**28 and q & (q - 1) == 0
        shares, t = agg.auto_shares(k)
        assert 2 < shares <= k and shares // 2 < t < shares + 1
    assert agg.auto_shares(5) == (5, 3)
    assert agg.auto_shares(50)[0] % 2 == 1
    assert agg.auto_clipping_range([np.array([0.3, -1.5])], headroom=4.0, minimum=4.0) == 8.0
    assert agg.auto_clipping_range([np.array([0.1])], headroom=4.0, minimum=4.0) == 4.0


def test_flower_secagg_quantisation_error_is_negligible_with_auto_parameters():
    """Flower's own quantise -> sum -> dequantise path, with our choice of parameters."""
    from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_combine
    from flwr.common.secure_aggregation.quantization import dequantize, quantize

    rng = np.random.default_rng(0)
    k, clip = 5, 8.0
    q = agg.auto_quantization_range(k, 2**32)
    ns = rng.integers(3000, 5000, size=k)
    max_w = float(ns.max())
    ups = [rng.normal(0, 1, 1000) for _ in range(k)]
    total = np.zeros(1001, dtype=np.int64)
    for n, u in zip(ns, ups):
        q_ratio = round(n / max_w * q)
        vec = factor_combine(q_ratio, quantize([u * (q_ratio / q)], clip, q))
        total += np.concatenate([np.atleast_1d(v) for v in vec]).astype(np.int64)
    total %= 2**32
    recon = dequantize([total[1:]], clip, q)[0] - (k - 1) * clip
    est = recon * q / total[0]
    exact = sum(n * u for n, u in zip(ns, ups)) / ns.sum()
    assert np.max(np.abs(est - exact)) < 1e-5


# -- CKKS ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secret():
    return hckks.SecretCkks.generate(CkksSettings())


def test_ckks_weighted_sum_roundtrip(secret):
    coord = hckks.CkksAggregator(secret.params_bytes, expect_params_fp=secret.params_fp)
    assert len(secret.params_bytes) < 200  # parameters only, no keys
    rng = np.random.default_rng(1)
    ws = [rng.normal(0, 1, 5000) for _ in range(3)]
    ns = [100, 300, 600]
    loaded = [
        coord.load(f"bank_{i}", secret.encrypt(hckks.weighted_plaintext(w, n / 600)), hckks.n_chunks(5001, coord.slots))
        for i, (w, n) in enumerate(zip(ws, ns))
    ]
    out = hckks.unweight(secret.decrypt(coord.sum(loaded), 5001))
    exact = sum(n * w for n, w in zip(ns, ws)) / sum(ns)
    assert np.max(np.abs(out - exact)) < 1e-6
    # the coordinator's context can neither decrypt nor encrypt
    import tenseal as ts

    ct = ts.ckks_vector_from(coord.context, secret.encrypt(np.ones(3))[0])
    with pytest.raises(ValueError):
        ct.decrypt()
    with pytest.raises(ValueError):
        ts.ckks_vector(coord.context, [1.0])


def test_ckks_ciphertext_upload_size(secret):
    n = 100_000
    cts = secret.encrypt(np.zeros(n + 1))
    ratio = sum(len(c) for c in cts) / (4 * n)
    assert ratio <= 15.0


def test_ckks_mismatched_contexts_fail_clearly(secret):
    other_params = hckks.SecretCkks.generate(CkksSettings(coeff_mod_bit_sizes=(50, 50), scale_bits=30))
    coord = hckks.CkksAggregator(secret.params_bytes)
    with pytest.raises(hckks.CkksContextMismatch, match="bank_x.*different CKKS parameters"):
        coord.load("bank_x", other_params.encrypt(np.ones(4)), 1)
    with pytest.raises(hckks.CkksContextMismatch, match="expected 2"):
        coord.load("bank_x", secret.encrypt(np.ones(4)), 2)
    with pytest.raises(hckks.CkksContextMismatch, match="fingerprint"):
        hckks.CkksAggregator(other_params.params_bytes, expect_params_fp=secret.params_fp)
    with pytest.raises(hckks.CkksContextMismatch, match="secret key"):
        hckks.CkksAggregator(secret.secret_bytes)
    # same parameters, different key: caught by the key fingerprint before anything is decrypted
    other_key = hckks.SecretCkks.generate(CkksSettings())
    assert other_key.params_fp == secret.params_fp and other_key.key_fp != secret.key_fp
    with pytest.raises(hckks.CkksContextMismatch, match="key fingerprint"):
        hckks.SecretCkks.load(other_key.secret_bytes, expect_key_fp=secret.key_fp)


# -- key hand-over ------------------------------------------------------------------------
def test_keyshare_seal_and_open(secret):
    b_priv = keyshare.generate_private()
    env = keyshare.seal(
        secret.secret_bytes,
        run_id="r1",
        sender="bank_a",
        recipient="bank_b",
        recipient_public=keyshare.public_of(b_priv),
    )
    assert secret.secret_bytes[:64] not in env.ciphertext
    got = keyshare.open_envelope(env, private_raw=b_priv, me="bank_b", run_id="r1")
    assert hckks.SecretCkks.load(got, expect_key_fp=secret.key_fp).key_fp == secret.key_fp
    with pytest.raises(keyshare.EnvelopeError, match="addressed"):
        keyshare.open_envelope(env, private_raw=b_priv, me="bank_c", run_id="r1")
    with pytest.raises(keyshare.EnvelopeError, match="run"):
        keyshare.open_envelope(env, private_raw=b_priv, me="bank_b", run_id="r2")
    with pytest.raises(keyshare.EnvelopeError, match="does not open"):
        keyshare.open_envelope(env, private_raw=keyshare.generate_private(), me="bank_b", run_id="r1")
    tampered = keyshare.Envelope(**{**env.__dict__, "ciphertext": env.ciphertext[:-1] + b"\x00"})
    with pytest.raises(keyshare.EnvelopeError):
        keyshare.open_envelope(tampered, private_raw=b_priv, me="bank_b", run_id="r1")


# -- DP accounting ------------------------------------------------------------------------
def test_dp_epsilon():
    # a single Gaussian release with sigma = sensitivity: the analytic value is ~4.4 at 1e-5
    assert 4.2 < hdp.composed_gaussian_epsilon(1.0, 1, 1e-5) < 4.6
    e10 = hdp.composed_gaussian_epsilon(1.0, 10, 1e-5)
    e_more_noise = hdp.composed_gaussian_epsilon(2.0, 10, 1e-5)
    assert e_more_noise < e10 < 10 * hdp.composed_gaussian_epsilon(1.0, 1, 1e-5)
    equal = hdp.central_report(1.0, 1.0, 10, 1e-5, [100, 100, 100])
    skewed = hdp.central_report(1.0, 1.0, 10, 1e-5, [100, 100, 400])
    assert math.isclose(equal.noise_multiplier, 1.0) and skewed.epsilon > equal.epsilon
    loc = hdp.local_report(0.5, 1e-6, 1.0, 2.0, 20)
    assert loc.epsilon <= loc.epsilon_basic_composition == 10.0
