"""A bank's part of one horizontal round: train locally (or compute feature moments), then
protect the update as its own scenario says, before anything leaves the node.

The handler of a round is a chain of Flower mods assembled per message from the bank's own
scenario: under CKKS :func:`ckks_mod` (decrypt the global model, check and encrypt the update),
under SecAgg+ the range guard (:func:`parties.horizontal.flower_legacy.secagg_guard`), an
optional observation tap, Flower's DP mods (``fixedclipping_mod`` / ``LocalDpMod``), and last
the legacy NumPyClient that trains (:class:`BankClient`). A bank refuses to send a plaintext
update when its scenario says ``secagg+`` or ``ckks``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.client.mod import LocalDpMod, fixedclipping_mod, make_ffn
from flwr.common import NDArrays, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays

from fedcredit.config import Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import local
from fedcredit.horizontal.aggregation import UpdateRejected, flatten, unflatten, validate_update
from fedcredit.horizontal.messages import pack_floats, unpack_chunks, unpack_floats
from fedcredit.horizontal.settings import HorizontalSettings, from_scenario
from fedcredit.horizontal.upload_auth import upload_digest
from parties.common.node import NodeRuntime
from parties.horizontal import flower_legacy as legacy
from parties.horizontal import transport as ht
from parties.horizontal.bank_node import BankEnv, ProtocolRefused, Tap, bank_name, secret, state

Handler = legacy.Handler


class BankClient(NumPyClient):
    """Local step of a round: train from the global weights, or compute feature moments."""

    def __init__(self, scenario: Scenario, settings: HorizontalSettings, party: str) -> None:
        self.scenario, self.settings, self.party = scenario, settings, party

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
        task = str(config.get(ht.CFG_TASK, "train"))
        if task == "stats":
            res = local.compute_moments(self.scenario, self.settings, self.party)
            return res.arrays, res.n, {}
        if task != "train":
            raise ValueError(f"{self.party}: unknown task {task!r}")
        mean = config.get(ht.CFG_MEAN)
        std = config.get(ht.CFG_STD)
        prep = local.preprocessor(
            self.settings,
            None if mean is None else unpack_floats(_as_bytes(mean)).tolist(),
            None if std is None else unpack_floats(_as_bytes(std)).tolist(),
        )
        res = local.train_round(
            self.scenario,
            self.settings,
            self.party,
            [np.asarray(p) for p in parameters],
            int(config.get(ht.CFG_ROUND, 0)),
            prep,
        )
        arrays = local.apply_fault(str(config.get(ht.CFG_FAULT, "")), self.party, res.arrays)
        metrics: dict[str, Scalar] = dict(res.metrics) if self.settings.aggregation == "plain" else {}
        return arrays, res.n, metrics


def _as_bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes in the round's config, got {type(value).__name__}")
    return value


def ckks_mod(
    msg: Message,
    ctx: Context,
    call_next: Handler,
    *,
    party: str,
    settings: HorizontalSettings,
    scenario: Scenario,
    task: str,
    sign: Callable[[bytes], bytes],
) -> Message:
    """Decrypt the encrypted global model (and moments) in; check and encrypt the update out,
    signed with the node key (``sign``) so a releasing bank can tell it from a forgery."""
    fitins = legacy.fitins_of(msg)
    cfg = dict(fitins.config)
    key = secret(ctx, party)
    d = local.bank_data(scenario, party)
    if task == "stats":
        shapes = [(2, d.n_features)]
    else:
        shapes = [a.shape for a in local.initial_weights(settings, d.n_features, 0)]
    length = int(sum(int(np.prod(s)) for s in shapes))
    if fitins.parameters.tensor_type == ht.CKKS_TENSOR_TYPE:
        if int(cfg.get(ht.CFG_LEN, -1)) != length + 1:
            raise hckks.CkksContextMismatch(
                f"{party}: encrypted model has {cfg.get(ht.CFG_LEN)!s} values, this bank's model needs {length + 1}"
            )
        key = secret(ctx, party, str(cfg.get(ht.CFG_KEY_FP, "")))
        vec = hckks.unweight(key.decrypt(fitins.parameters.tensors, length + 1))
        fitins.parameters = ndarrays_to_parameters(unflatten(vec, shapes))
    if ht.CFG_STATS_CKKS in cfg:
        key = secret(ctx, party, str(cfg.get(ht.CFG_KEY_FP, "")))
        chunks = unpack_chunks(_as_bytes(cfg.pop(ht.CFG_STATS_CKKS)))
        mom = hckks.unweight(key.decrypt(chunks, int(cfg.pop(ht.CFG_STATS_LEN))))
        mean, std = hdata.moments_to_mean_std(mom.reshape(2, -1))
        cfg[ht.CFG_MEAN], cfg[ht.CFG_STD] = pack_floats(mean), pack_floats(std)
    fitins.config = cfg
    out = call_next(legacy.with_fitins(msg, fitins), ctx)
    if out.has_error():
        return out
    res = legacy.fitres_of(out)
    arrays = parameters_to_ndarrays(res.parameters)
    bound = local.STATS_BOUND if task == "stats" else settings.max_abs_weight
    validate_update(party, arrays, shapes, bound=bound)
    n_ref = int(cfg.get(ht.CFG_N_REF, 0))
    if not 0 < res.num_examples <= n_ref:
        raise UpdateRejected(party, f"sample count {res.num_examples} outside (0, n_ref={n_ref}]")
    plain = hckks.weighted_plaintext(flatten(arrays), res.num_examples / n_ref)
    chunks = key.encrypt(plain)
    rnd = int(cfg.get(ht.CFG_ROUND, 0))
    digest = upload_digest(
        scenario_sha256=scenario.config_hash,
        run_id=str(msg.metadata.run_id),
        task=task,
        round=rnd,
        party=party,
        chunks=chunks,
    )
    res.parameters = Parameters(tensors=chunks, tensor_type=ht.CKKS_TENSOR_TYPE)
    res.metrics = {ht.CFG_KEY_FP: key.key_fp, ht.CFG_UPLOAD_SIG: sign(digest), ht.CFG_UPLOAD_ROUND: rnd}
    return legacy.with_fitres(out, res, keep_input=False)


def tap_mod(msg: Message, ctx: Context, call_next: Handler, *, tap: Tap, info: dict) -> Message:
    """Observation hook: hands the plaintext update, just before it is protected, to ``tap``."""
    out = call_next(msg, ctx)
    if not out.has_error():
        res = legacy.fitres_of(out)
        tap({**info, "n": int(res.num_examples), "arrays": parameters_to_ndarrays(res.parameters)})
    return out


def local_round(msg: Message, ctx: Context, env: BankEnv) -> Message:
    """This bank's answer to one round (inside SecAgg+'s own mod when the round is masked)."""
    cfg = legacy.fitins_of(msg).config
    scenario = env.scenario(ctx, str(cfg.get(ht.CFG_SCENARIO, "")))
    settings = from_scenario(scenario)
    party = bank_name(ctx, scenario)
    state(ctx)["scenario_sha256"] = scenario.config_hash
    task = str(cfg.get(ht.CFG_TASK, "train"))
    rnd = int(cfg.get(ht.CFG_ROUND, 0))
    secagg = legacy.is_secagg_round(msg)
    if settings.aggregation == "secagg+" and not secagg:
        raise ProtocolRefused(
            f"{party}: scenario requires secagg+ but the coordinator asked for an unmasked update; refusing"
        )
    if settings.aggregation != "secagg+" and secagg:
        raise ProtocolRefused(f"{party}: SecAgg+ round, but this bank's scenario says {settings.aggregation!r}")
    mods: list[Any] = []
    if settings.aggregation == "ckks":

        def sign(digest: bytes) -> bytes:
            return NodeRuntime(ctx, scenario, env.out_dir).signing_key().sign(digest)

        mods.append(partial(ckks_mod, party=party, settings=settings, scenario=scenario, task=task, sign=sign))
    if secagg:
        mods.append(partial(legacy.secagg_guard, party=party))
    if env.tap is not None:
        info = {
            "scenario": scenario.name,
            "party": party,
            "round": rnd,
            "task": task,
            "aggregation": settings.aggregation,
        }
        mods.append(partial(tap_mod, tap=env.tap, info=info))
    if task == "train" and settings.dp.kind == "central":
        mods.append(fixedclipping_mod)
    elif task == "train" and settings.dp.kind == "local":
        dp = settings.dp
        mods.append(LocalDpMod(dp.clipping_norm, dp.local_sensitivity, dp.epsilon, dp.delta))
    return make_ffn(legacy.answer_fit(BankClient(scenario, settings, party)), mods)(msg, ctx)
