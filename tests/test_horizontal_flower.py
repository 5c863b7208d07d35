"""Horizontal training over Flower: one Ray simulation of 5 nodes, plus in-process runs.

3-bank scenarios on the bundled default_credit (nodes 3-4 idle): plain, SecAgg+ and CKKS with the
same seed and rounds, and the non-IID FedProx configuration with central DP. Checks accuracy
against plain and centralised pooled training, and privacy: what the coordinator received is
compared with each bank's plaintext update captured at the bank (``DirTap``).

5-bank scenarios: SecAgg+ with a bank raising mid-round and another sending out-of-range values
(on Ray), and a SecAgg+ run through the production coordinator whose signed ledger must verify
against every bank's egress log (on Ray); in-process (the same apps on a grid that ships Flower's
deflated messages, no Ray): plain with NaN / wrong-shape / Inf updates, CKKS + local DP with a NaN
update, and the synthetic-SME configuration (MLP, CKKS-averaged standardisation moments).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import time_budget
from flwr.common import bytes_to_ndarray, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat

from fedcredit import config
from fedcredit.horizontal.aggregation import weighted_average
from parties.sweeps import DirTap, run_horizontal_sweep_in_process, run_horizontal_sweep_on_ray

# the test bodies are quick; the module fixture (nine scenarios, five on Ray) has its own budget
pytestmark = [pytest.mark.flower, pytest.mark.timeout(600, func_only=True)]
SIM_BUDGET = 2400  # seconds for the whole ``sim`` fixture, under load on 2 cores
ROOT = Path(__file__).resolve().parents[1]


def _variant(
    name: str, new_name: str, *, horizontal: dict | None = None, extra: str = "", replace: dict[str, str] | None = None
) -> config.Scenario:
    text = (ROOT / "configs" / f"{name}.toml").read_text()
    text = text.replace(f'name = "{name}"', f'name = "{new_name}"', 1)
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    for key, value in (horizontal or {}).items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} =")]
        idx = lines.index("[horizontal]")
        lines.insert(idx + 1, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    return config.loads(text + extra, path=ROOT / "configs" / f"{new_name}.toml")


def _no_ray_left() -> None:
    import ray

    assert not ray.is_initialized()
    tmp = os.environ.get("RAY_TMPDIR", "")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    mine = [ln for ln in ps.splitlines() if "raylet" in ln and tmp and tmp in ln]
    assert not mine, f"Ray processes left behind: {mine[:2]}"


def _events(result, kind):
    return result.recorder.events_of(kind)


def _global_sent(result, rnd: int) -> list[np.ndarray]:
    """The global model the coordinator sent out at the start of round ``rnd`` (plaintext modes)."""
    for c in result.captured:
        if c.direction == "out" and c.round == rnd and "fitins.parameters" in c.content.array_records:
            params = compat.recorddict_to_fitins(c.content, keep_input=True).parameters
            if params.tensors:
                return parameters_to_ndarrays(params)
    raise AssertionError(f"no FitIns with parameters captured for round {rnd}")


def _blobs(content) -> list[bytes]:
    """The message as Flower puts it on the wire (protobuf), plus each array's and bytes value's raw
    bytes (what the coordinator can read)."""
    from flwr.common.serde import recorddict_to_proto

    out = [recorddict_to_proto(content).SerializeToString()]
    for rec in content.array_records.values():
        out += [bytes(a.data) for a in rec.values()]
    for rec in content.config_records.values():
        for v in rec.values():
            out += [bytes(x) for x in (v if isinstance(v, list) else [v]) if isinstance(x, bytes)]
    return out


def _faults(*items: tuple[str, int, str]) -> str:
    return "".join(f'\n[[horizontal.simulate_faults]]\nparty = "{p}"\nround = {r}\nkind = "{k}"\n' for p, r, k in items)


FIVE = "".join(f'\n[parties.bank_{c}]\nrole = "bank"\ndata = "default_credit"\n' for c in "de")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One Ray simulation (5 nodes) for the mode comparison, the mid-round dropout and the
    production-ledger run; the other failure scenarios run in-process (same apps, no Ray)."""
    from fedcredit.data.synth import generate

    sme = tmp_path_factory.mktemp("sme")
    generate(8000, 5, sme, seed=7, fmt="csv")
    taps = tmp_path_factory.mktemp("taps")
    three = {"rounds": 3}
    small = {"rounds": 2, "max_rows_per_bank": 1500, "baseline": "false"}
    banks5 = {"[horizontal]": FIVE + "\n[horizontal]"}
    on_ray = [
        _variant("horizontal-plain", "a-plain", horizontal=three),
        _variant("horizontal-secagg", "a-secagg", horizontal=three),
        _variant("horizontal-ckks", "a-ckks", horizontal=three),
        _variant(
            "horizontal-secagg",
            "b-secagg-drop",
            horizontal=small,
            replace=banks5,
            extra=_faults(("bank_e", 1, "raise"), ("bank_d", 2, "range")),
        ),
    ]
    in_process = [
        _variant(
            "horizontal-noniid",
            "a-noniid-cdp",
            horizontal={"rounds": 3},
            extra='\n[horizontal.dp]\nkind = "central"\nclipping_norm = 0.5\nnoise_multiplier = 0.1\n',
        ),
        _variant(
            "horizontal-plain",
            "b-plain-bad",
            horizontal=small,
            replace=banks5,
            extra=_faults(("bank_b", 1, "nan"), ("bank_c", 1, "shape"), ("bank_d", 2, "inf")),
        ),
        _variant(
            "horizontal-ckks",
            "b-ckks-ldp",
            horizontal=small,
            replace=banks5,
            extra=_faults(("bank_a", 1, "nan"))
            + '\n[horizontal.dp]\nkind = "local"\nclipping_norm = 0.5\nepsilon = 1.0\ndelta = 1e-6\n',
        ),
        _variant(
            "horizontal-synthetic",
            "b-synthetic",
            horizontal={"rounds": 4},
            replace={"runs/data/sme-20k-5banks": str(sme)},
        ),
    ]
    ledger = _variant("horizontal-secagg", "c-ledger", horizontal=small, replace=banks5)
    out = tmp_path_factory.mktemp("sim")
    with time_budget(SIM_BUDGET, "the horizontal sim fixture (9 scenarios)"):
        results = run_horizontal_sweep_on_ray(
            on_ray, out / "ray", tap=DirTap(str(taps)), capture=True, ledger_scenario=ledger
        )
        _no_ray_left()
        results += run_horizontal_sweep_in_process(in_process, out / "local", tap=DirTap(str(taps)), capture=True)
    return {r.scenario.name: r for r in results}, DirTap(str(taps)), out / "ray" / "ledger-run"


@pytest.fixture(scope="module")
def run_a(sim):
    return sim[0], sim[1]


@pytest.fixture(scope="module")
def run_b(sim):
    return sim[0], sim[1]


def test_modes_match_plain_and_pooled(run_a):
    res, _ = run_a
    for name, r in res.items():
        assert not r.error, f"{name}: {r.error}"
    plain = res["a-plain"].metrics
    for name in ("a-secagg", "a-ckks"):
        m = res[name].metrics
        assert abs(m["auc"] - plain["auc"]) <= 0.005, (name, m["auc"], plain["auc"])
        pooled = m["centralised"]["pooled_same_model"]["auc"]
        assert abs(m["auc"] - pooled) <= 0.01, (name, m["auc"], pooled)
        assert m["rounds"] == 3 and m["seconds"] > 0 and {"ks", "gini"} <= set(m)
    assert res["a-ckks"].metrics["ckks"]["bytes_ratio_vs_float32"] > 1
    assert res["a-secagg"].metrics["secagg"]["clipping_ranges"]
    noniid = res["a-noniid-cdp"].metrics
    assert noniid["auc"] > 0.66 and noniid["skew"] == 0.8 and noniid["fedprox_mu"] == 0.01
    assert len(set(noniid["banks"].values())) == 3  # unequal, non-IID portfolios
    dp = noniid["dp"]  # central DP on top of SecAgg+: client-side clipping, coordinator noise
    assert dp["kind"] == "central" and np.isfinite(dp["epsilon"]) and dp["epsilon"] > 0
    assert dp["clipping_norm"] == 0.5 and dp["noise_multiplier"] <= 0.1


def test_aggregates_are_exact_weighted_averages(run_a):
    res, tap = run_a
    for name, tol in (("a-plain", 1e-12), ("a-secagg", 1e-5)):
        r = res[name]
        taps = [tap.load(name, b, 1) for b in ("bank_a", "bank_b", "bank_c")]
        expected = weighted_average([a for _, a in taps], [n for n, _ in taps])
        got = _global_sent(r, 2)
        assert all(np.max(np.abs(g - e)) < tol for g, e in zip(got, expected)), name


def test_coordinator_never_sees_an_individual_update(run_a):
    res, tap = run_a
    # positive control: in plain mode the capture does expose each update, and the needle search
    # below finds it -- so the checks on the secure modes can fail
    plain = res["a-plain"]
    matched = seen = 0
    for c in plain.captured:
        if c.direction == "in" and c.step == "horizontal.fit" and c.round == 1:
            _, arrays = tap.load("a-plain", c.party, 1)
            got = parameters_to_ndarrays(compat.recorddict_to_fitres(c.content, keep_input=True).parameters)
            assert len(got) == len(arrays) > 0 and all(np.array_equal(g, a) for g, a in zip(got, arrays))
            needles = [  # C or Fortran layout: Flower serialises each array as .npy in its own memory order
                a.astype(dt).tobytes(order=o) for a in arrays for dt in (np.float64, np.float32) for o in "CF"
            ]
            matched += any(nd in blob for blob in _blobs(c.content) for nd in needles)
            seen += 1
    # every bank's plain update decodes to its exact arrays and the byte search finds each of them,
    # so the byte search used on the secure modes below can fail
    assert seen == matched == 3, f"positive control: {seen} plain updates seen, {matched} found by the search"
    for name in ("a-secagg", "a-ckks"):
        r = res[name]
        seen = 0
        for c in r.captured:
            if c.direction != "in" or c.round < 1:
                continue
            n, arrays = tap.load(name, c.party, c.round)
            needles = [  # C or Fortran layout: Flower serialises each array as .npy in its own memory order
                a.astype(dt).tobytes(order=o) for a in arrays for dt in (np.float64, np.float32) for o in "CF"
            ]
            n_ref = max(r.metrics["banks"].values())
            needles += [(a * f).astype(np.float64).tobytes() for a in arrays for f in (n, n / n_ref)]
            for blob in _blobs(c.content):
                assert not any(nd in blob for nd in needles), (name, c.party, c.step)
            if c.step == "horizontal.secagg.collect_masked_vectors":
                seen += 1
                assert not c.content.array_records["fitres.parameters"]  # cleared by secaggplus_mod
                masked = [
                    bytes_to_ndarray(b) for b in c.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
                ]
                secagg = r.metrics["secagg"]
                q, clip = secagg["quantization_range"], secagg["clipping_ranges"][c.round - 1]
                scale = round(n / secagg["max_weight"] * q) / q
                for m, a in zip(masked[1:], arrays):
                    plain_q = (a * scale + clip) * q / (2 * clip)
                    close = np.abs(m.astype(np.float64) - plain_q) <= 2
                    assert close.sum() == 0, "a masked value equals the quantised plaintext"
                assert not dict(c.content.config_records["fitres.metrics"])  # no per-bank loss either
            if c.step == "horizontal.fit":
                seen += 1
                res_ = compat.recorddict_to_fitres(c.content, keep_input=True)
                assert res_.parameters.tensor_type == "ckks"
                assert all(len(t) > 100_000 for t in res_.parameters.tensors)
        assert seen == 9, (name, seen)  # 3 banks x 3 rounds


def test_ckks_key_never_reaches_the_coordinator(run_a):
    import tenseal as ts

    from fedcredit.horizontal.messages import KeygenReply
    from protocols.common import wire

    r = res_ckks = run_a[0]["a-ckks"]
    keygen = [c for c in r.captured if c.direction == "in" and c.step == "horizontal.ckks_keygen"]
    assert len(keygen) == 1
    reply = wire.decode(bytes(keygen[0].content.config_records["fc"]["msg"]), KeygenReply)
    ctx = ts.context_from(reply.params_context)
    assert not ctx.is_private() and len(reply.params_context) < 200
    assert len(reply.envelopes) == 2 and all(len(e) > 100_000 for e in reply.envelopes)
    assert res_ckks.metrics["ckks"]["key_fingerprint"] == reply.key_fp


def test_ledger_records_every_step(run_a):
    r = run_a[0]["a-secagg"]
    steps = {s["step"] for s in r.recorder.steps}
    assert {
        "horizontal.setup",
        "horizontal.secagg.setup",
        "horizontal.secagg.share_keys",
        "horizontal.secagg.collect_masked_vectors",
        "horizontal.secagg.unmask",
    } <= steps
    for s in r.recorder.steps:
        for m in s["messages"]:
            assert len(m["sha256"]) == 64 and m["size"] > 0 and m["sender"] and m["recipient"]
    releases = _events(r, "model_release")
    assert len(releases) == 1 and Path(releases[0]["coordinator"]["path"]).exists()


def test_secagg_survives_a_bank_raising_mid_round(run_b):
    res, tap = run_b
    r = res["b-secagg-drop"]
    assert not r.error, r.error
    hist = {h["round"]: h for h in r.metrics["history"]}
    assert hist[1]["contributors"] == 4 and hist[2]["contributors"] == 4
    drops = [e for e in _events(r, "dropout") if e["party"] == "bank_e"]
    assert drops and drops[0]["round"] == 1 and "simulated failure" in drops[0]["reason"]
    assert drops[0]["step"] == "horizontal.secagg.collect_masked_vectors"  # after keys were shared
    # the survivors' masks were removed exactly: round-1 aggregate = average of a..d
    taps = [tap.load("b-secagg-drop", b, 1) for b in ("bank_a", "bank_b", "bank_c", "bank_d")]
    expected = weighted_average([a for _, a in taps], [n for n, _ in taps])
    assert all(np.max(np.abs(g - e)) < 1e-5 for g, e in zip(_global_sent(r, 2), expected))
    rej = _events(r, "update_rejected")
    assert [(e["party"], e["round"]) for e in rej] == [("bank_d", 2)] and "out of range" in rej[0]["reason"]


def test_bad_updates_rejected_with_bank_named(run_b):
    res, tap = run_b
    r = res["b-plain-bad"]
    assert not r.error, r.error
    rej = {(e["party"], e["round"]): e["reason"] for e in _events(r, "update_rejected")}
    assert set(rej) == {("bank_b", 1), ("bank_c", 1), ("bank_d", 2)}
    assert "NaN" in rej[("bank_b", 1)] and "wrong shape" in rej[("bank_c", 1)] and "Inf" in rej[("bank_d", 2)]
    hist = {h["round"]: h["contributors"] for h in r.metrics["history"]}
    assert hist == {1: 3, 2: 4}
    taps = [tap.load("b-plain-bad", b, 1) for b in ("bank_a", "bank_d", "bank_e")]
    expected = weighted_average([a for _, a in taps], [n for n, _ in taps])
    assert all(np.allclose(g, e, atol=1e-12) for g, e in zip(_global_sent(r, 2), expected))
    assert np.isfinite(r.metrics["auc"])
    c = res["b-ckks-ldp"]
    assert not c.error, c.error
    crej = _events(c, "update_rejected")
    assert [(e["party"], e["round"]) for e in crej] == [("bank_a", 1)] and "NaN" in crej[0]["reason"]
    dp = c.metrics["dp"]
    assert dp["kind"] == "local" and 0 < dp["epsilon"] <= dp["epsilon_basic_composition"] == 2.0


def test_synthetic_smes_with_encrypted_standardisation(run_b):
    r = run_b[0]["b-synthetic"]
    assert not r.error, r.error
    m = r.metrics
    assert m["model"] == "mlp" and len(m["banks"]) == 5
    assert m["auc"] > 0.6
    assert abs(m["auc"] - m["centralised"]["pooled_same_model"]["auc"]) < 0.05
    # the moments travelled encrypted: the coordinator sent them to banks only as ciphertexts
    out = [c for c in r.captured if c.direction == "out" and c.step == "horizontal.fit" and c.round == 1]
    cfg = dict(compat.recorddict_to_fitins(out[-1].content, keep_input=True).config)
    from fedcredit.horizontal.messages import unpack_chunks

    assert "fc.stats_mean" not in cfg and len(unpack_chunks(cfg["fc.stats_ckks"])) == 1


def test_production_coordinator_ledger_verifies(sim):
    from fedcredit.ledger import load_public_key, verify

    res, _, ledger_dir = sim
    r = res["c-ledger"]
    assert not r.error, r.error
    assert {"auc", "ks", "gini", "rounds", "seconds"} <= set(r.metrics)
    egress = sorted((ledger_dir / "nodes").glob("*/egress.sqlite"))
    assert len(egress) == 5
    report = verify(
        ledger_dir / "ledger.sqlite", public_key=load_public_key(ledger_dir / "coordinator_pub.pem"), egress=egress
    )
    assert report.ok, report.errors[:5]
    assert all(e.matched == e.messages_in_ledger > 0 for e in report.egress)
