"""Coordinator side of horizontal training: ``run(grid, context, scenario, recorder, out_dir)``.

Steps of a run (each recorded in the ledger through :class:`RecordingGrid`):

1. ``horizontal.setup`` -- every node says who it is; banks report row counts, feature count and
   schema hash (all banks must agree) and, under CKKS, an X25519 public key.
2. ``ckks`` only: the first bank generates the CKKS key and seals it to the other banks' X25519
   keys; the coordinator relays the envelopes and keeps only the keyless parameters context.
3. optional federated standardisation (``standardize = "federated"``): one round that securely
   averages per-bank feature moments with the run's aggregation mode.
4. ``rounds`` FedAvg/FedProx rounds through Flower's legacy ``DefaultWorkflow`` and a
   :class:`HorizontalStrategy` (sample-count weights): ``plain`` uses Flower's default fit
   workflow with coordinator-side validation, ``secagg+`` Flower's ``SecAggPlusWorkflow`` (the
   clipping range re-chosen from the global model each round), ``ckks`` :class:`CkksFitWorkflow`,
   which sums ciphertexts. Central DP wraps the strategy in Flower's
   ``DifferentialPrivacyClientSideFixedClipping``.
5. The model is released (under CKKS one bank decrypts the final aggregate), saved, evaluated
   on the holdout rows when the coordinator can read them, and compared with centralised
   pooled training of the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.serverapp import Grid

from fedcredit import metrics as fmetrics
from fedcredit import models
from fedcredit.config import Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import dp as hdp
from fedcredit.horizontal import local
from fedcredit.horizontal.aggregation import (
    UpdateRejected,
    auto_clipping_range,
    auto_quantization_range,
    auto_shares,
    unflatten,
    validate_update,
    weighted_average,
)
from fedcredit.horizontal.messages import (
    InstallReply,
    InstallRequest,
    KeygenReply,
    KeygenRequest,
    ReleaseReply,
    ReleaseRequest,
    SetupReply,
    SetupRequest,
    pack_chunks,
    pack_floats,
    unpack_chunks,
)
from fedcredit.horizontal.settings import HorizontalSettings, from_scenario
from parties.common.relay import wait_for_nodes
from parties.horizontal import client as hc
from parties.horizontal.audit import RecordingGrid
from protocols.common import wire

log = logging.getLogger(__name__)
MIN_CONTRIBUTORS = 2


class Recorder(Protocol):
    def step(self, step: str, round: int, messages: list[dict], metrics: dict | None = None) -> None: ...

    def event(self, kind: str, payload: dict) -> None: ...


class HorizontalRunError(RuntimeError):
    """The run cannot go on; the message names the party and step."""


@dataclass
class Bank:
    name: str
    node_id: int
    n_train: int
    n_features: int
    schema: str
    x25519: bytes


@dataclass
class _Run:
    """Everything the coordinator's workflow pieces share during one run."""

    scenario: Scenario
    settings: HorizontalSettings
    recorder: Recorder
    grid: RecordingGrid
    banks: list[Bank]
    holdout: Any = None
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    n_ref: int = 0
    stats_cfg: dict[str, Any] = field(default_factory=dict)
    moments: np.ndarray | None = None
    ckks_agg: hckks.CkksAggregator | None = None
    key_fp: str = ""
    history: list[dict] = field(default_factory=list)
    secagg_ranges: list[float] = field(default_factory=list)
    ckks_upload_bytes: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    @property
    def by_node(self) -> dict[int, Bank]:
        return {b.node_id: b for b in self.banks}

    def drop_bank(self, name: str) -> None:
        """Never ask this bank again (e.g. its CKKS key set-up failed)."""
        self.banks = [b for b in self.banks if b.name != name]

    def flush(self, metrics: dict | None = None) -> None:
        """Write the recorded traffic as ledger step records."""
        for step, rnd, entries in self.grid.take():
            self.recorder.step(step, rnd, entries, metrics or {})


# -- messages --------------------------------------------------------------------------------
def _query(
    grid: RecordingGrid, node_ids: list[int], action: str, payloads: dict[int, Any], timeout: float
) -> dict[int, Message]:
    msgs = [
        Message(
            RecordDict({hc.MSG: ConfigRecord({"msg": wire.encode(payloads[n])})}),
            dst_node_id=n,
            message_type=f"{MessageType.QUERY}.{action}",
            group_id=action,
        )
        for n in node_ids
    ]
    return {r.metadata.src_node_id: r for r in grid.send_and_receive(msgs, timeout=timeout)}


def _decode(reply: Message | None, cls: type, who: str, step: str) -> Any:
    if reply is None:
        raise HorizontalRunError(f"{who} failed at {step}: no reply within the timeout")
    if reply.has_error():
        raise HorizontalRunError(f"{who} failed at {step}: {reply.error.reason}")
    return wire.decode(bytes(reply.content.config_records[hc.MSG]["msg"]), cls)


def _setup(grid: RecordingGrid, scenario: Scenario, settings: HorizontalSettings) -> list[Bank]:
    node_ids = wait_for_nodes(grid, len(scenario.parties), settings.timeout)
    req = SetupRequest(scenario_sha256=scenario.config_hash, want_x25519=settings.aggregation == "ckks")
    replies = _query(grid, node_ids, "horizontal_setup", {n: req for n in node_ids}, settings.timeout)
    wanted = hdata.bank_names(scenario)
    found: dict[str, Bank] = {}
    for nid, rep in replies.items():
        if rep.has_error():  # e.g. a spare simulated node that is no party of this scenario
            log.info("node %s did not join the horizontal run: %s", nid, rep.error.reason)
            continue
        r = wire.decode(bytes(rep.content.config_records[hc.MSG]["msg"]), SetupReply)
        grid.names[nid] = r.party
        if r.role != "bank":
            continue
        if r.party in found:
            raise HorizontalRunError(f"{r.party}: two nodes claim to be this bank")
        found[r.party] = Bank(r.party, nid, r.n_train, r.n_features, r.schema_sha256, bytes(r.x25519_public))
    missing = [b for b in wanted if b not in found]
    if missing:
        raise HorizontalRunError(f"{missing[0]}: did not answer the horizontal set-up (answers from {sorted(found)})")
    banks = [found[n] for n in wanted]
    ref = banks[0]
    for b in banks:
        if b.schema != ref.schema or b.n_features != ref.n_features:
            raise HorizontalRunError(
                f"{b.name}: feature schema differs from {ref.name}'s "
                f"({b.n_features} vs {ref.n_features} columns); horizontal training "
                "needs one schema"
            )
        if b.n_train < 1:
            raise HorizontalRunError(f"{b.name}: has no training rows")
    return banks


def _ckks_keys(run: _Run) -> None:
    """Key generation at the first bank, sealed hand-over to the others, coordinator keyless."""
    leader, others = run.banks[0], run.banks[1:]
    timeout = run.settings.timeout
    req = KeygenRequest(
        scenario_sha256=run.scenario.config_hash,
        recipients=[b.name for b in others],
        recipient_publics=[b.x25519 for b in others],
    )
    reply = _decode(
        _query(run.grid, [leader.node_id], "horizontal_keygen", {leader.node_id: req}, timeout).get(leader.node_id),
        KeygenReply,
        leader.name,
        "ckks key generation",
    )
    run.ckks_agg = hckks.CkksAggregator(reply.params_context, expect_params_fp=reply.params_fp)
    run.key_fp = reply.key_fp
    payloads = {
        b.node_id: InstallRequest(
            scenario_sha256=run.scenario.config_hash, envelope=env, key_fp=reply.key_fp, params_fp=reply.params_fp
        )
        for b, env in zip(others, reply.envelopes, strict=True)
    }
    replies = _query(run.grid, list(payloads), "horizontal_install", payloads, timeout)
    for b in others:
        try:
            got = _decode(replies.get(b.node_id), InstallReply, b.name, "ckks key install")
            if got.key_fp != reply.key_fp or got.params_fp != reply.params_fp:
                raise hckks.CkksContextMismatch(
                    f"{b.name}: installed CKKS context {got.params_fp[:12]}/"
                    f"{got.key_fp[:12]} differs from the run's "
                    f"{reply.params_fp[:12]}/{reply.key_fp[:12]}"
                )
        except (HorizontalRunError, hckks.CkksContextMismatch) as exc:
            raise HorizontalRunError(f"CKKS key hand-over failed: {exc}") from None
    run.flush()


# -- strategy --------------------------------------------------------------------------------
class HorizontalStrategy(FedAvg):
    """FedAvg weighted by sample counts, restricted to the scenario's banks.

    ``task`` is "train" (model rounds) or "stats" (one round of feature moments). In plain mode
    every update is validated here (NaN/Inf, shape, range) and a bad one is rejected with the
    bank named while the others are averaged. Under SecAgg+ the workflow hands over the already
    unmasked aggregate. ``evaluate`` is Flower's per-round hook: it evaluates plaintext global
    models on the holdout and writes the round's ledger records.
    """

    def __init__(self, run: _Run, task: str, initial: list[np.ndarray]) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=MIN_CONTRIBUTORS,
            min_available_clients=MIN_CONTRIBUTORS,
            accept_failures=True,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        self.run, self.task = run, task
        self.aggregated: dict[int, int] = {}  # round -> number of contributing banks
        self.released: dict[int, list[np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"HorizontalStrategy({self.run.settings.aggregation}, {self.task})"

    def ledger_round(self, server_round: int) -> int:
        """Round number in the ledger: the feature-moments round is round 0."""
        return 0 if self.task == "stats" else server_round

    def round_config(self, server_round: int, bank: Bank) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            hc.CFG_SCENARIO: self.run.scenario.config_hash,
            hc.CFG_ROUND: server_round,
            hc.CFG_TASK: self.task,
            hc.CFG_N_REF: self.run.n_ref,
        }
        if self.task == "train":
            cfg.update(self.run.stats_cfg)
            fault = self.run.settings.fault_for(bank.name, server_round)
            if fault:
                cfg[hc.CFG_FAULT] = fault
        if self.run.key_fp:
            cfg[hc.CFG_KEY_FP] = self.run.key_fp
        return cfg

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.run.grid.round = self.ledger_round(server_round)
        # num_available() makes Flower's client-manager thread register the grid's nodes now (a bare
        # wait_for would sleep until its next 5 s poll); a node that went away must not stall a round
        client_manager.num_available()
        client_manager.wait_for(len(self.run.banks), timeout=int(min(10, self.run.settings.timeout)))
        proxies = {p.node_id: p for p in client_manager.all().values()}  # type: ignore[attr-defined]
        out = []
        for bank in self.run.banks:
            if bank.node_id not in proxies:
                self.run.recorder.event(
                    "dropout",
                    {"party": bank.name, "round": server_round, "step": "configure", "reason": "node not connected"},
                )
                continue
            cfg = self.round_config(server_round, bank)
            if self.run.ckks_agg is not None and parameters.tensor_type == hc.CKKS_TENSOR_TYPE:
                cfg[hc.CFG_LEN] = sum(int(np.prod(s)) for s in self._shapes()) + 1
            out.append((proxies[bank.node_id], FitIns(parameters, cfg)))
        return out

    def _shapes(self) -> list[tuple[int, ...]]:
        return self.run.shapes if self.task == "train" else [(2, self.run.banks[0].n_features)]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list
    ) -> tuple[Parameters | None, dict]:
        by_node = self.run.by_node
        settings = self.run.settings
        if settings.aggregation == "secagg+":
            arrays = parameters_to_ndarrays(results[0][1].parameters) if results else []
            if not arrays or not all(np.isfinite(a).all() for a in arrays):
                raise HorizontalRunError(f"round {server_round}: SecAgg+ produced no finite aggregate")
            self.aggregated[server_round] = len(results)
            return ndarrays_to_parameters(arrays), {"contributors": len(results)}
        bound = local.STATS_BOUND if self.task == "stats" else settings.max_abs_weight
        good, weights = [], []
        for proxy, res in results:
            bank = by_node[proxy.node_id]
            try:
                arrays = parameters_to_ndarrays(res.parameters)
                validate_update(bank.name, arrays, self._shapes(), bound=bound)
                if res.num_examples < 1:
                    raise UpdateRejected(bank.name, f"sample count {res.num_examples} is not positive")
            except UpdateRejected as exc:
                self.run.recorder.event(
                    "update_rejected",
                    {"party": bank.name, "round": server_round, "step": "horizontal.fit", "reason": exc.reason},
                )
                log.warning("round %s: rejected %s", server_round, exc)
                continue
            good.append(arrays)
            weights.append(res.num_examples)
        if len(good) < MIN_CONTRIBUTORS:
            raise HorizontalRunError(
                f"round {server_round}: only {len(good)} valid update(s); need >= {MIN_CONTRIBUTORS}"
            )
        self.aggregated[server_round] = len(good)
        return ndarrays_to_parameters(weighted_average(good, weights)), {"contributors": len(good)}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict] | None:
        if self.task != "train" or server_round == 0:
            self.run.flush()
            return None
        entry: dict[str, Any] = {
            "round": server_round,
            "contributors": self.aggregated.get(server_round, 0),
            "seconds": round(time.time() - self.run.started, 2),
        }
        arrays = None
        if parameters.tensor_type != hc.CKKS_TENSOR_TYPE:
            arrays = parameters_to_ndarrays(parameters)
        elif server_round in self.released:
            arrays = self.released[server_round]
        if arrays is not None and self.run.holdout is not None:
            entry.update(_evaluate(self.run, arrays))
        self.run.history.append(entry)
        self.run.flush({k: v for k, v in entry.items() if k != "seconds"})
        if "auc" in entry:
            return entry["log_loss"], {"auc": entry["auc"]}
        return None


class _CentralDp(DifferentialPrivacyClientSideFixedClipping):
    """Flower's central-DP wrapper, but a dropout does not void the round: the noise is scaled
    to the number of banks that actually contributed (Flower returns no update at all when any
    client failed)."""

    def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        planned = self.num_sampled_clients
        self.num_sampled_clients = max(1, len(results))
        try:
            return super().aggregate_fit(server_round, results, [])
        finally:
            self.num_sampled_clients = planned


# -- fit workflows ---------------------------------------------------------------------------
def _current(context: LegacyContext) -> tuple[int, Parameters]:
    cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
    rnd = cast(int, cfg[WorkflowKey.CURRENT_ROUND])
    params = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    return rnd, params


class SecAggPlusRound(SecAggPlusWorkflow):
    """Flower's SecAggPlusWorkflow, with the clipping range re-chosen from the global model before
    each round, and a halted protocol turned into an error instead of a silently skipped round."""

    def __init__(self, run: _Run, strategy: HorizontalStrategy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run, self.strategy = run, strategy

    def __call__(self, grid: Grid, context: Context) -> None:
        rnd, params = _current(cast(LegacyContext, context))
        s = self.run.settings.secagg
        if self.strategy.task == "stats":
            self.clipping_range = local.STATS_BOUND
        elif s.clipping_range > 0:
            self.clipping_range = s.clipping_range
        else:
            self.clipping_range = auto_clipping_range(
                parameters_to_ndarrays(params), s.clipping_headroom, s.min_clipping_range
            )
        if self.strategy.task == "train":
            self.run.secagg_ranges.append(self.clipping_range)
        self.run.grid.round = self.strategy.ledger_round(rnd)
        super().__call__(grid, context)
        if rnd not in self.strategy.aggregated:
            self.run.flush()
            raise HorizontalRunError(
                f"round {rnd}: SecAgg+ halted (too few banks answered to reconstruct "
                f"the masks: threshold {self.reconstruction_threshold}); see dropout events"
            )


class CkksFitWorkflow:
    """One CKKS round: send the (encrypted) global model, sum the banks' ciphertexts.

    The coordinator checks each upload (ciphertext count, key fingerprint, that every ciphertext
    loads under the run's parameters) and rejects a bad one with the bank named; it never holds a
    key that decrypts. The final aggregate (and, with ``release_each_round``, every aggregate) is
    decrypted by one bank and released.
    """

    def __init__(self, run: _Run, strategy: HorizontalStrategy, rounds: int) -> None:
        self.run, self.strategy, self.rounds = run, strategy, rounds

    def __call__(self, grid: Grid, context: Context) -> None:
        ctx = cast(LegacyContext, context)
        rnd, params = _current(ctx)
        self.run.grid.round = self.strategy.ledger_round(rnd)
        agg = self.run.ckks_agg
        assert agg is not None
        instructions = ctx.strategy.configure_fit(rnd, params, ctx.client_manager)
        msgs = [
            Message(
                content=compat.fitins_to_recorddict(ins, True),
                dst_node_id=proxy.node_id,
                message_type=MessageType.TRAIN,
                group_id=str(rnd),
            )
            for proxy, ins in instructions
        ]
        replies = grid.send_and_receive(msgs, timeout=self.run.settings.timeout)
        length = sum(int(np.prod(s)) for s in self.strategy._shapes()) + 1
        expected = hckks.n_chunks(length, agg.slots)
        loaded = []
        for rep in replies:
            if rep.has_error():
                continue  # recorded by the RecordingGrid
            bank = self.run.by_node[rep.metadata.src_node_id]
            res = compat.recorddict_to_fitres(rep.content, keep_input=True)
            try:
                if res.parameters.tensor_type != hc.CKKS_TENSOR_TYPE:
                    raise hckks.CkksContextMismatch(f"{bank.name}: sent an unencrypted update in a ckks run")
                fp = str(res.metrics.get(hc.CFG_KEY_FP, ""))
                if fp != self.run.key_fp:
                    raise hckks.CkksContextMismatch(
                        f"{bank.name}: update encrypted under CKKS key {fp[:12]}…, "
                        f"the run's key is {self.run.key_fp[:12]}…"
                    )
                loaded.append(agg.load(bank.name, res.parameters.tensors, expected))
                if self.strategy.task == "train":
                    self.run.ckks_upload_bytes.append(sum(len(t) for t in res.parameters.tensors))
            except hckks.CkksContextMismatch as exc:
                self.run.recorder.event(
                    "update_rejected", {"party": bank.name, "round": rnd, "step": "horizontal.fit", "reason": str(exc)}
                )
                log.warning("round %s: rejected %s", rnd, exc)
        if len(loaded) < MIN_CONTRIBUTORS:
            raise HorizontalRunError(
                f"round {rnd}: only {len(loaded)} valid encrypted update(s); need >= {MIN_CONTRIBUTORS}"
            )
        summed = agg.sum(loaded)
        self.strategy.aggregated[rnd] = len(loaded)
        ctx.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            Parameters(tensors=summed, tensor_type=hc.CKKS_TENSOR_TYPE), keep_input=True
        )
        if self.strategy.task == "train" and (rnd == self.rounds or self.run.settings.release_each_round):
            weights, moments = _release(self.run, summed, length)
            self.strategy.released[rnd] = unflatten(weights, self.run.shapes)
            if moments.size and self.run.moments is None:
                self.run.moments = moments.reshape(2, -1)


def _release(run: _Run, summed: list[bytes], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ask a bank to decrypt the aggregate (+ standardisation moments): the model release."""
    stats_chunks = unpack_chunks(run.stats_cfg[hc.CFG_STATS_CKKS]) if hc.CFG_STATS_CKKS in run.stats_cfg else []
    stats_len = int(run.stats_cfg.get(hc.CFG_STATS_LEN, 0))
    errors = []
    for bank in run.banks:  # the first bank that answers releases
        req = ReleaseRequest(
            scenario_sha256=run.scenario.config_hash,
            chunks=summed,
            length=length,
            key_fp=run.key_fp,
            stats_chunks=stats_chunks,
            stats_length=stats_len,
        )
        rep = _query(run.grid, [bank.node_id], "horizontal_release", {bank.node_id: req}, run.settings.timeout)
        try:
            got = _decode(rep.get(bank.node_id), ReleaseReply, bank.name, "release")
        except HorizontalRunError as exc:
            errors.append(str(exc))
            continue
        if got.weights.size != length - 1:
            raise HorizontalRunError(f"{bank.name}: released {got.weights.size} weights, expected {length - 1}")
        return got.weights, got.moments
    raise HorizontalRunError("no bank could release the CKKS aggregate: " + "; ".join(errors))


# -- evaluation ------------------------------------------------------------------------------
def _preprocessor(run: _Run) -> hdata.Preprocessor:
    if run.settings.standardize == "federated":
        if run.moments is None:
            raise HorizontalRunError("the standardisation moments were not released")
        mean, std = hdata.moments_to_mean_std(run.moments)
        return hdata.Preprocessor(run.settings.transform, mean, std)
    return hdata.Preprocessor(run.settings.transform)


def _score(model: Any, data: Any, prep: hdata.Preprocessor) -> dict[str, float]:
    p = models.predict_proba(model, prep(data.features))
    s = fmetrics.summary(data.labels, p)
    return {k: round(float(v), 6) for k, v in s.items() if k in ("auc", "ks", "gini", "log_loss")}


def _build(run: _Run, arrays: list[np.ndarray]) -> Any:
    model = models.build_model(local.model_spec(run.settings, run.banks[0].n_features))
    models.set_weights(model, arrays)
    return model


def _evaluate(run: _Run, arrays: list[np.ndarray]) -> dict[str, float]:
    return _score(_build(run, arrays), run.holdout, _preprocessor(run))


_BASELINES: dict[tuple, dict[str, float] | None] = {}


def _baseline_key(scenario: Scenario, s: HorizontalSettings) -> tuple:
    banks = tuple((n, scenario.resolve(scenario.party(n).data)) for n in hdata.bank_names(scenario))
    return (
        banks,
        scenario.seed,
        s.skew,
        s.max_rows_per_bank,
        s.transform,
        s.standardize,
        s.model,
        s.hidden,
        s.rounds,
        s.local_epochs,
        s.batch_size,
        s.lr,
        s.optimizer,
        s.weight_decay,
        s.class_weight,
    )


def centralised_baseline(scenario: Scenario, settings: HorizontalSettings) -> dict[str, float] | None:
    """The same model trained on all banks' rows pooled in one place (what FL should approach).

    Cached per (data, model, training settings): modes compared side by side share it."""
    key = _baseline_key(scenario, settings)
    if key not in _BASELINES:
        _BASELINES[key] = _pooled_training(scenario, settings)
    return _BASELINES[key]


def _pooled_training(scenario: Scenario, settings: HorizontalSettings) -> dict[str, float] | None:
    holdout = hdata.load_holdout(scenario, settings)
    if holdout is None:
        return None
    pooled = hdata.load_pooled_train(scenario, settings)
    base = hdata.Preprocessor(settings.transform)
    if settings.standardize == "federated":
        mean, std = hdata.moments_to_mean_std(hdata.local_moments(base.base(pooled.features)))
        prep = hdata.Preprocessor(settings.transform, mean, std)
    else:
        prep = base
    spec = local.model_spec(settings, pooled.n_features)
    model = models.build_model(spec, seed=scenario.seed)
    cfg = models.TrainConfig(
        epochs=settings.rounds * settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        optimizer=settings.optimizer,
        weight_decay=settings.weight_decay,
        pos_weight=models.pos_weight(pooled.labels, settings.class_weight),
        seed=scenario.seed,
    )
    models.train(model, prep(pooled.features), pooled.labels, cfg)
    s = fmetrics.summary(holdout.labels, models.predict_proba(model, prep(holdout.features)))
    return {k: round(float(v), 6) for k, v in s.items() if k in ("auc", "ks", "gini", "log_loss")}


def _save_model(run: _Run, arrays: list[np.ndarray], out_dir: Path, feature_names: list[str] | None) -> dict:
    prep = _preprocessor(run)
    doc = {
        "kind": run.settings.model,
        "hidden": list(run.settings.hidden),
        "n_features": run.banks[0].n_features,
        "feature_names": feature_names,
        "transform": prep.transform,
        "mean": None if prep.mean is None else prep.mean.tolist(),
        "std": None if prep.std is None else prep.std.tolist(),
        "weights": [a.tolist() for a in arrays],
        "shapes": [list(a.shape) for a in arrays],
        "scenario_sha256": run.scenario.config_hash,
    }
    data = json.dumps(doc, sort_keys=True).encode()
    path = out_dir / "horizontal_model.json"
    path.write_bytes(data)
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest()}


# -- the run ---------------------------------------------------------------------------------
def _fit_workflow(run: _Run, strategy: HorizontalStrategy, rounds: int) -> Any:
    s = run.settings
    if s.aggregation == "plain":
        return default_fit_workflow
    if s.aggregation == "ckks":
        return CkksFitWorkflow(run, strategy, rounds)
    shares, threshold = auto_shares(len(run.banks))
    q = s.secagg.quantization_range or auto_quantization_range(len(run.banks), s.secagg.modulus_range)
    return SecAggPlusRound(
        run,
        strategy,
        num_shares=s.secagg.num_shares or shares,
        reconstruction_threshold=s.secagg.reconstruction_threshold or threshold,
        max_weight=float(run.n_ref),
        clipping_range=s.secagg.min_clipping_range,
        quantization_range=q,
        modulus_range=s.secagg.modulus_range,
        timeout=s.timeout,
    )


def _legacy_rounds(
    run: _Run, context: Context, strategy: HorizontalStrategy, rounds: int, wrapped: Any = None
) -> LegacyContext:
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=wrapped or strategy)
    workflow = DefaultWorkflow(fit_workflow=_fit_workflow(run, strategy, rounds), evaluate_workflow=lambda _g, _c: None)
    workflow(run.grid, legacy)
    return legacy


def _standardise(run: _Run, context: Context) -> None:
    """Federated feature moments with the run's aggregation mode (one extra round)."""
    d = run.banks[0].n_features
    strategy = HorizontalStrategy(run, "stats", [np.zeros((2, d))])
    legacy = _legacy_rounds(run, context, strategy, 1)
    params = compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    if params.tensor_type == hc.CKKS_TENSOR_TYPE:
        run.stats_cfg = {hc.CFG_STATS_CKKS: pack_chunks(list(params.tensors)), hc.CFG_STATS_LEN: 2 * d + 1}
    else:
        run.moments = parameters_to_ndarrays(params)[0]
        mean, std = hdata.moments_to_mean_std(run.moments)
        run.stats_cfg = {hc.CFG_MEAN: pack_floats(mean), hc.CFG_STD: pack_floats(std)}
    run.flush()


def run(grid: Grid, context: Context, scenario: Scenario, recorder: Recorder, out_dir: Path) -> dict:
    """Run a horizontal scenario end to end; returns (and the caller writes) ``metrics.json``."""
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = from_scenario(scenario)
    if isinstance(grid, RecordingGrid):  # a caller that captures traffic (audits, privacy tests)
        rgrid = grid
        rgrid.default_timeout = settings.timeout
    else:
        rgrid = RecordingGrid(grid, default_timeout=settings.timeout)
    banks = _setup(rgrid, scenario, settings)
    rgrid.on_event = recorder.event
    run_ = _Run(scenario=scenario, settings=settings, recorder=recorder, grid=rgrid, banks=banks)
    run_.flush()
    run_.n_ref = max(b.n_train for b in banks)
    initial = local.initial_weights(settings, banks[0].n_features, scenario.seed)
    run_.shapes = [a.shape for a in initial]
    if settings.evaluation == "holdout":
        run_.holdout = hdata.load_holdout(scenario, settings)
    if settings.aggregation == "ckks":
        _ckks_keys(run_)
    if settings.standardize == "federated":
        _standardise(run_, context)
    t_train = time.time()
    strategy = HorizontalStrategy(run_, "train", initial)
    wrapped = None
    if settings.dp.kind == "central":
        wrapped = _CentralDp(
            strategy,
            noise_multiplier=settings.dp.noise_multiplier,
            clipping_norm=settings.dp.clipping_norm,
            num_sampled_clients=len(banks),
        )
    legacy = _legacy_rounds(run_, context, strategy, settings.rounds, wrapped)
    train_seconds = time.time() - t_train
    log.info("%s: %d rounds trained in %.1f s", scenario.name, settings.rounds, train_seconds)
    if settings.aggregation == "ckks":
        final = strategy.released[settings.rounds]
    else:
        final = parameters_to_ndarrays(
            compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        )
    names = hdata.load_holdout(scenario, settings).feature_names if run_.holdout is not None else None
    release = _save_model(run_, final, out_dir, names)
    log.info("%s: model saved at %.1f s", scenario.name, time.time() - t0)
    recorder.event("model_release", {"coordinator": release, "rounds": settings.rounds})
    run_.flush()
    result: dict[str, Any] = {
        "mode": "horizontal",
        "aggregation": settings.aggregation,
        "rounds": settings.rounds,
        "banks": {b.name: b.n_train for b in banks},
        "rows_train": sum(b.n_train for b in banks),
        "rows_test": len(run_.holdout) if run_.holdout is not None else 0,
        "model": settings.model,
        "fedprox_mu": settings.fedprox_mu,
        "local_epochs": settings.local_epochs,
        "skew": settings.skew,
        "history": run_.history,
        "train_seconds": round(train_seconds, 2),
        "flower_round_trips": rgrid_calls(rgrid),
        "model_sha256": release["sha256"],
        "model_path": release["path"],
    }
    if run_.holdout is not None:
        result.update(_evaluate(run_, final))
        if settings.baseline:
            base = centralised_baseline(scenario, settings)
            if base is not None:
                result["centralised"] = {"pooled_same_model": base}
    log.info("%s: evaluated at %.1f s", scenario.name, time.time() - t0)
    result.update(_mode_details(run_, settings))
    result["seconds"] = round(time.time() - t0, 2)
    return result


def rgrid_calls(grid: RecordingGrid) -> int:
    return grid.calls


def _mode_details(run: _Run, s: HorizontalSettings) -> dict:
    out: dict[str, Any] = {}
    n_params = sum(int(np.prod(sh)) for sh in run.shapes)
    if s.aggregation == "secagg+":
        shares, threshold = auto_shares(len(run.banks))
        out["secagg"] = {
            "num_shares": s.secagg.num_shares or shares,
            "reconstruction_threshold": s.secagg.reconstruction_threshold or threshold,
            "quantization_range": s.secagg.quantization_range
            or auto_quantization_range(len(run.banks), s.secagg.modulus_range),
            "modulus_range": s.secagg.modulus_range,
            "max_weight": run.n_ref,
            "clipping_ranges": run.secagg_ranges,
        }
    if s.aggregation == "ckks":
        up = run.ckks_upload_bytes
        out["ckks"] = {
            "poly_modulus_degree": s.ckks.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(s.ckks.coeff_mod_bit_sizes),
            "scale_bits": s.ckks.scale_bits,
            "params_fingerprint": run.ckks_agg.params_fp if run.ckks_agg else "",
            "key_fingerprint": run.key_fp,
            "upload_bytes_per_bank": int(np.mean(up)) if up else 0,
            "bytes_ratio_vs_float32": round(float(np.mean(up)) / (4 * n_params), 2) if up else None,
        }
    if s.dp.kind == "central":
        out["dp"] = hdp.central_report(
            s.dp.noise_multiplier, s.dp.clipping_norm, s.rounds, s.dp.delta, [b.n_train for b in run.banks]
        ).to_dict()
    elif s.dp.kind == "local":
        out["dp"] = hdp.local_report(
            s.dp.epsilon, s.dp.delta, s.dp.clipping_norm, s.dp.local_sensitivity, s.rounds
        ).to_dict()
    return out
