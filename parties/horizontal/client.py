"""Bank side of horizontal training: Flower handlers registered on the single ClientApp.

``register(app, scenario_of, out_dir)`` adds:

* ``@app.train()`` -- every training/statistics round. Messages carrying SecAgg+ stage configs go
  through Flower's own ``secaggplus_mod``; inside it (or directly in plain/ckks mode) a chain of
  function-specific mods is assembled per message from the bank's own scenario:
  ``ckks`` (decrypt the global model / encrypt the update) or the SecAgg+ range guard, an optional
  observation tap, Flower's DP mods (``fixedclipping_mod`` / ``LocalDpMod``), and finally Flower's
  legacy ``handle_legacy_message_from_msgtype`` with a NumPyClient that trains locally.
* ``@app.query("horizontal_setup" | "horizontal_keygen" | "horizontal_install" | "horizontal_release")``
  -- introduction (sizes, schema hash, X25519 key), CKKS key generation and hand-over, and the
  final model release under CKKS.

A bank refuses to send a plaintext update when its own scenario says ``secagg+`` or ``ckks``,
refuses a coordinator that runs a different scenario (config hash), and checks its update
(NaN/Inf, shape, range) before masking or encrypting it -- the coordinator cannot check then.
Each reply is also signed into the node's egress log when the run has a ledger.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.client import NumPyClient
from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
from flwr.client.mod import LocalDpMod, fixedclipping_mod, make_ffn, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE
from flwr.compat.common import recorddict_compat as compat

from fedcredit.config import ConfigError, Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import keyshare, local
from fedcredit.horizontal.aggregation import UpdateRejected, flatten, unflatten, validate_update
from fedcredit.horizontal.messages import (
    InstallReply,
    InstallRequest,
    KeygenReply,
    KeygenRequest,
    ReleaseReply,
    ReleaseRequest,
    SetupReply,
    SetupRequest,
    pack_floats,
    unpack_chunks,
    unpack_floats,
)
from fedcredit.horizontal.settings import HorizontalSettings, from_scenario
from parties.horizontal.audit import COORDINATOR, classify, digest
from protocols.common import wire

log = logging.getLogger(__name__)

STATE = "fedcredit.horizontal"  # this module's ConfigRecord in context.state
MSG = "fc"  # RecordDict key of query payloads; ConfigRecord {"msg": wire bytes}
# FitIns config keys the coordinator sets
CFG_SCENARIO, CFG_ROUND, CFG_TASK, CFG_FAULT = "fc.scenario", "fc.round", "fc.task", "fc.fault"
CFG_N_REF, CFG_LEN, CFG_KEY_FP = "fc.n_ref", "fc.ckks_len", "fc.ckks_key_fp"
CFG_MEAN, CFG_STD, CFG_STATS_CKKS, CFG_STATS_LEN = "fc.stats_mean", "fc.stats_std", "fc.stats_ckks", "fc.stats_len"
CKKS_TENSOR_TYPE = "ckks"
ERROR_CODE = 1007

ScenarioProvider = Callable[..., Scenario]
Tap = Callable[[dict[str, Any]], None]
_CKKS_CACHE: dict[str, hckks.SecretCkks] = {}


class ProtocolRefused(RuntimeError):
    """The bank refuses a request that would break its scenario's privacy settings."""


class _Env:
    """What one registration needs: how to find the scenario, where logs go, optional tap."""

    def __init__(self, scenario_of: ScenarioProvider, out_dir: Path | None, tap: Tap | None) -> None:
        self.scenario_of = scenario_of
        self.out_dir = out_dir
        self.tap = tap
        try:
            self._by_hash = len(inspect.signature(scenario_of).parameters) >= 2
        except (TypeError, ValueError):
            self._by_hash = False

    def scenario(self, context: Context, wanted: str) -> Scenario:
        """The bank's scenario; it must be the one the coordinator runs (same config hash)."""
        sc = self.scenario_of(context, wanted) if self._by_hash else self.scenario_of(context)
        if wanted and sc.config_hash != wanted:
            raise ConfigError(
                f"the coordinator runs scenario {wanted[:12]}… but this node's scenario "
                f"{sc.name!r} has hash {sc.config_hash[:12]}…; both must use the same file"
            )
        return sc


def _state(context: Context) -> ConfigRecord:
    if STATE not in context.state.config_records:
        context.state.config_records[STATE] = ConfigRecord()
    return context.state.config_records[STATE]


def _party(context: Context, scenario: Scenario) -> tuple[str, str]:
    from parties.common.roles import resolve_party

    spec = resolve_party(context, scenario)
    return spec.name, spec.role


def _bank(context: Context, scenario: Scenario) -> str:
    name, role = _party(context, scenario)
    if role != "bank":
        raise ProtocolRefused(f"{name} has role {role!r}; horizontal training is for banks only")
    return name


def _secret(context: Context, party: str, key_fp: str | None = None) -> hckks.SecretCkks:
    st = _state(context)
    if "ckks_secret" not in st:
        raise ProtocolRefused(f"{party}: holds no CKKS key (key set-up did not complete on this node)")
    fp = str(st["ckks_key_fp"])
    if key_fp is not None and fp != key_fp:
        raise hckks.CkksContextMismatch(
            f"{party}: the aggregate was produced under CKKS key {key_fp[:12]}…, this bank holds key {fp[:12]}…"
        )
    if fp not in _CKKS_CACHE:
        _CKKS_CACHE[fp] = hckks.SecretCkks.load(bytes(st["ckks_secret"]), expect_key_fp=fp)
    return _CKKS_CACHE[fp]


# -- egress log ------------------------------------------------------------------------------
def _egress(env: _Env, context: Context, scenario: Scenario, step: str, kind: str, reply: Message) -> None:
    """Sign what this node sends into its egress log (only in runs that keep a ledger)."""
    if reply.has_error():
        return
    if env.out_dir is None and "node-dir" not in context.node_config:
        return
    from parties.common.node import NodeRuntime

    node = NodeRuntime(context, scenario, env.out_dir)
    run_id = node.get("run_id")
    if run_id is None:  # no hello from a ledger-keeping coordinator in this run
        return
    from fedcredit.ledger import EgressLog

    size, sha = digest(reply.content)
    elog = EgressLog.create(node.egress_path, node.signing_key(), run_id=str(run_id), node=node.name)
    try:
        elog.record_sent_digest(kind=kind, recipient=COORDINATOR, step=step, sha256=sha, size=size)
    finally:
        elog.close()


# -- training --------------------------------------------------------------------------------
class _BankClient(NumPyClient):
    """Local step of a round: train from the global weights, or compute feature moments."""

    def __init__(self, scenario: Scenario, settings: HorizontalSettings, party: str) -> None:
        self.scenario, self.settings, self.party = scenario, settings, party

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        task = str(config.get(CFG_TASK, "train"))
        if task == "stats":
            res = local.compute_moments(self.scenario, self.settings, self.party)
            return res.arrays, res.n, {}
        if task != "train":
            raise ValueError(f"{self.party}: unknown task {task!r}")
        mean = config.get(CFG_MEAN)
        std = config.get(CFG_STD)
        prep = local.preprocessor(
            self.settings,
            None if mean is None else unpack_floats(mean).tolist(),
            None if std is None else unpack_floats(std).tolist(),
        )
        res = local.train_round(
            self.scenario,
            self.settings,
            self.party,
            [np.asarray(p) for p in parameters],
            int(config.get(CFG_ROUND, 0)),
            prep,
        )
        arrays = local.apply_fault(str(config.get(CFG_FAULT, "")), self.party, res.arrays)
        metrics = res.metrics if self.settings.aggregation == "plain" else {}
        return arrays, res.n, metrics


def _fitres(msg: Message):  # noqa: ANN202 - flwr FitRes
    return compat.recorddict_to_fitres(msg.content, keep_input=True)


def _secagg_guard(msg: Message, ctx: Context, call_next, *, party: str) -> Message:  # noqa: ANN001
    """Check the update against the SecAgg+ clipping range before Flower masks (and would clip) it."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    shapes = [a.shape for a in parameters_to_ndarrays(fitins.parameters)]
    out = call_next(msg, ctx)
    if out.has_error():
        return out
    res = _fitres(out)
    st = ctx.state.config_records[RECORD_KEY_STATE]
    clip, max_weight, q = float(st["clipping_range"]), float(st["max_weight"]), int(st["target_range"])
    n = int(res.num_examples)
    if not 0 < n <= max_weight:
        raise UpdateRejected(party, f"sample count {n} outside (0, SecAgg+ max_weight {max_weight:g}]")
    scale = round(n / max_weight * q) / q  # exactly the factor secaggplus_mod multiplies by
    arrays = parameters_to_ndarrays(res.parameters)
    validate_update(party, arrays, shapes, bound=clip, scale=scale)
    res.metrics = {}
    out.content = compat.fitres_to_recorddict(res, keep_input=True)
    return out


def _ckks_mod(
    msg: Message,
    ctx: Context,
    call_next,
    *,
    party: str,
    settings: HorizontalSettings,  # noqa: ANN001
    scenario: Scenario,
    task: str,
) -> Message:
    """Decrypt the encrypted global model (and moments) in; check and encrypt the update out."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    cfg = dict(fitins.config)
    secret = _secret(ctx, party)
    d = local.bank_data(scenario, party)
    if task == "stats":
        shapes = [(2, d.n_features)]
    else:
        shapes = [a.shape for a in local.initial_weights(settings, d.n_features, 0)]
    length = int(sum(int(np.prod(s)) for s in shapes))
    if fitins.parameters.tensor_type == CKKS_TENSOR_TYPE:
        if int(cfg.get(CFG_LEN, -1)) != length + 1:
            raise hckks.CkksContextMismatch(
                f"{party}: encrypted model has {cfg.get(CFG_LEN)} values, this bank's model needs {length + 1}"
            )
        secret = _secret(ctx, party, str(cfg.get(CFG_KEY_FP, "")))
        vec = hckks.unweight(secret.decrypt(fitins.parameters.tensors, length + 1))
        fitins.parameters = ndarrays_to_parameters(unflatten(vec, shapes))
    if CFG_STATS_CKKS in cfg:
        secret = _secret(ctx, party, str(cfg.get(CFG_KEY_FP, "")))
        mom = hckks.unweight(secret.decrypt(unpack_chunks(cfg.pop(CFG_STATS_CKKS)), int(cfg.pop(CFG_STATS_LEN))))
        mean, std = hdata.moments_to_mean_std(mom.reshape(2, -1))
        cfg[CFG_MEAN], cfg[CFG_STD] = pack_floats(mean), pack_floats(std)
    fitins.config = cfg
    msg.content = compat.fitins_to_recorddict(fitins, keep_input=True)
    out = call_next(msg, ctx)
    if out.has_error():
        return out
    res = _fitres(out)
    arrays = parameters_to_ndarrays(res.parameters)
    bound = local.STATS_BOUND if task == "stats" else settings.max_abs_weight
    validate_update(party, arrays, shapes, bound=bound)
    n_ref = int(cfg.get(CFG_N_REF, 0))
    if not 0 < res.num_examples <= n_ref:
        raise UpdateRejected(party, f"sample count {res.num_examples} outside (0, n_ref={n_ref}]")
    plain = hckks.weighted_plaintext(flatten(arrays), res.num_examples / n_ref)
    res.parameters = Parameters(tensors=secret.encrypt(plain), tensor_type=CKKS_TENSOR_TYPE)
    res.metrics = {CFG_KEY_FP: secret.key_fp}
    out.content = compat.fitres_to_recorddict(res, keep_input=False)
    return out


def _tap_mod(msg: Message, ctx: Context, call_next, *, tap: Tap, info: dict) -> Message:  # noqa: ANN001
    """Observation hook: hands the plaintext update, just before it is protected, to ``tap``."""
    out = call_next(msg, ctx)
    if not out.has_error():
        res = _fitres(out)
        tap({**info, "n": int(res.num_examples), "arrays": parameters_to_ndarrays(res.parameters)})
    return out


def _inner(msg: Message, ctx: Context, env: _Env) -> Message:
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    cfg = fitins.config
    scenario = env.scenario(ctx, str(cfg.get(CFG_SCENARIO, "")))
    settings = from_scenario(scenario)
    party = _bank(ctx, scenario)
    _state(ctx)["scenario_sha256"] = scenario.config_hash
    task = str(cfg.get(CFG_TASK, "train"))
    rnd = int(cfg.get(CFG_ROUND, 0))
    secagg = RECORD_KEY_CONFIGS in msg.content.config_records
    if settings.aggregation == "secagg+" and not secagg:
        raise ProtocolRefused(
            f"{party}: scenario requires secagg+ but the coordinator asked for an unmasked update; refusing"
        )
    if settings.aggregation != "secagg+" and secagg:
        raise ProtocolRefused(f"{party}: SecAgg+ round, but this bank's scenario says {settings.aggregation!r}")
    mods: list = []
    if settings.aggregation == "ckks":
        mods.append(partial(_ckks_mod, party=party, settings=settings, scenario=scenario, task=task))
    if secagg:
        mods.append(partial(_secagg_guard, party=party))
    if env.tap is not None:
        mods.append(
            partial(
                _tap_mod,
                tap=env.tap,
                info={
                    "scenario": scenario.name,
                    "party": party,
                    "round": rnd,
                    "task": task,
                    "aggregation": settings.aggregation,
                },
            )
        )
    if task == "train" and settings.dp.kind == "central":
        mods.append(fixedclipping_mod)
    elif task == "train" and settings.dp.kind == "local":
        dp = settings.dp
        mods.append(LocalDpMod(dp.clipping_norm, dp.local_sensitivity, dp.epsilon, dp.delta))
    client = _BankClient(scenario, settings, party)

    def handler(m: Message, c: Context) -> Message:
        return handle_legacy_message_from_msgtype(lambda _c: client.to_client(), m, c)

    return make_ffn(handler, mods)(msg, ctx)


def _train(msg: Message, ctx: Context, env: _Env) -> Message:
    step, _, reply_kind = classify(msg.metadata.message_type, msg.content)
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        reply = secaggplus_mod(msg, ctx, lambda m, c: _inner(m, c, env))
    else:
        reply = _inner(msg, ctx, env)
    wanted = str(_state(ctx).get("scenario_sha256", ""))
    if wanted:
        _egress(env, ctx, env.scenario(ctx, wanted), step, reply_kind, reply)
    return reply


# -- queries ---------------------------------------------------------------------------------
def _reply(msg: Message, payload: object) -> Message:
    return Message(RecordDict({MSG: ConfigRecord({"msg": wire.encode(payload)})}), reply_to=msg)


def _request(msg: Message, cls: type) -> Any:
    return wire.decode(bytes(msg.content.config_records[MSG]["msg"]), cls)


def _setup(msg: Message, ctx: Context, scenario: Scenario, req: SetupRequest) -> SetupReply:
    name, role = _party(ctx, scenario)
    _state(ctx)["scenario_sha256"] = scenario.config_hash
    if role != "bank":
        return SetupReply(
            party=name,
            role=role,
            scenario_sha256=scenario.config_hash,
            n_train=0,
            n_features=0,
            schema_sha256="",
            x25519_public=b"",
        )
    d = local.bank_data(scenario, name)
    pub = b""
    if req.want_x25519:
        st = _state(ctx)
        if "x25519_private" not in st:
            st["x25519_private"] = keyshare.generate_private()
        pub = keyshare.public_of(bytes(st["x25519_private"]))
    return SetupReply(
        party=name,
        role=role,
        scenario_sha256=scenario.config_hash,
        n_train=len(d),
        n_features=d.n_features,
        schema_sha256=hdata.schema_digest(d.feature_names),
        x25519_public=pub,
    )


def _keygen(msg: Message, ctx: Context, scenario: Scenario, req: KeygenRequest) -> KeygenReply:
    party = _bank(ctx, scenario)
    settings = from_scenario(scenario)
    if settings.aggregation != "ckks":
        raise ProtocolRefused(f"{party}: CKKS key generation requested, scenario says {settings.aggregation!r}")
    secret = hckks.SecretCkks.generate(settings.ckks)
    st = _state(ctx)
    st["ckks_secret"], st["ckks_key_fp"] = secret.secret_bytes, secret.key_fp
    _CKKS_CACHE[secret.key_fp] = secret
    run_id = str(msg.metadata.run_id)
    envelopes = [
        wire.encode(
            keyshare.seal(secret.secret_bytes, run_id=run_id, sender=party, recipient=r, recipient_public=bytes(pk))
        )
        for r, pk in zip(req.recipients, req.recipient_publics, strict=True)
    ]
    return KeygenReply(
        party=party,
        params_context=secret.params_bytes,
        params_fp=secret.params_fp,
        key_fp=secret.key_fp,
        envelopes=envelopes,
    )


def _install(msg: Message, ctx: Context, scenario: Scenario, req: InstallRequest) -> InstallReply:
    party = _bank(ctx, scenario)
    st = _state(ctx)
    if "x25519_private" not in st:
        raise ProtocolRefused(f"{party}: no X25519 key on this node; the setup step did not ask for one")
    env = wire.decode(req.envelope, keyshare.Envelope)
    secret_bytes = keyshare.open_envelope(
        env, private_raw=bytes(st["x25519_private"]), me=party, run_id=str(msg.metadata.run_id)
    )
    secret = hckks.SecretCkks.load(secret_bytes, expect_key_fp=req.key_fp, expect_params_fp=req.params_fp)
    st["ckks_secret"], st["ckks_key_fp"] = secret.secret_bytes, secret.key_fp
    _CKKS_CACHE[secret.key_fp] = secret
    return InstallReply(party=party, key_fp=secret.key_fp, params_fp=secret.params_fp)


def _release(msg: Message, ctx: Context, scenario: Scenario, req: ReleaseRequest) -> ReleaseReply:
    party = _bank(ctx, scenario)
    secret = _secret(ctx, party, req.key_fp)
    weights = hckks.unweight(secret.decrypt(req.chunks, req.length))
    moments = hckks.unweight(secret.decrypt(req.stats_chunks, req.stats_length)) if req.stats_length else np.zeros(0)
    return ReleaseReply(party=party, weights=weights, moments=moments)


_QUERIES = {
    "horizontal_setup": (SetupRequest, _setup),
    "horizontal_keygen": (KeygenRequest, _keygen),
    "horizontal_install": (InstallRequest, _install),
    "horizontal_release": (ReleaseRequest, _release),
}


def _query(action: str, msg: Message, ctx: Context, env: _Env) -> Message:
    cls, fn = _QUERIES[action]
    who = "?"
    try:
        req = _request(msg, cls)
        scenario = env.scenario(ctx, req.scenario_sha256)
        try:
            who = _party(ctx, scenario)[0]
        except Exception:  # noqa: BLE001 - the error below names what it can
            who = f"node-{ctx.node_id}"
        reply = _reply(msg, fn(msg, ctx, scenario, req))
        step, _, kind = classify(msg.metadata.message_type, msg.content)
        _egress(env, ctx, scenario, step, kind, reply)
        return reply
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the coordinator, named
        from parties.common.roles import RoleError

        if isinstance(exc, RoleError):  # a node that is no party of this scenario (e.g. a spare one)
            log.info("%s: not part of this scenario: %s", who, exc)
        else:
            log.error("%s failed at %s:\n%s", who, action, traceback.format_exc())
        return Message(Error(code=ERROR_CODE, reason=f"{who}: {type(exc).__name__}: {exc}"), reply_to=msg)


def register(
    app: ClientApp, scenario_of: ScenarioProvider, out_dir: Path | None = None, *, tap: Tap | None = None
) -> None:
    """Add the horizontal handlers to ``app``.

    ``scenario_of(context)`` returns the node's scenario; a driver that runs several scenarios in
    one Flower run (sweeps, tests) may pass ``scenario_of(context, config_hash)`` instead.
    ``tap``, if given, is called with each plaintext update right before it is masked/encrypted
    (audits and the privacy tests compare it with what the coordinator received).
    """
    env = _Env(scenario_of, out_dir, tap)

    @app.train()
    def horizontal_train(msg: Message, ctx: Context) -> Message:
        return _train(msg, ctx, env)

    for action in _QUERIES:

        def handler(msg: Message, ctx: Context, _action: str = action) -> Message:
            return _query(_action, msg, ctx, env)

        app.query(action)(handler)
