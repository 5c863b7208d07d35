"""Coordinator side of horizontal training: ``run(grid, context, scenario, recorder, out_dir)``.

Steps of a run (each recorded in the ledger through :class:`~parties.horizontal.audit.RecordingGrid`):

1. ``horizontal.setup`` -- every node says who it is; banks report row counts, feature count and
   schema hash (all banks must agree) and, under CKKS, an X25519 public key.
2. ``ckks`` only: the first bank generates the CKKS key and seals it to the other banks' X25519
   keys; the coordinator relays the envelopes and keeps only the keyless parameters context.
3. optional federated standardisation (``standardize = "federated"``): one round that securely
   averages per-bank feature moments with the run's aggregation mode.
4. ``rounds`` FedAvg/FedProx rounds of a :class:`~parties.horizontal.strategy.HorizontalStrategy`
   (sample-count weights) in Flower's legacy round shape (:mod:`parties.horizontal.flower_legacy`):
   ``plain`` uses Flower's default fit workflow with coordinator-side validation, ``secagg+``
   Flower's SecAgg+ workflow (the clipping range re-chosen from the global model each round),
   ``ckks`` :class:`~parties.horizontal.ckks_round.CkksFitWorkflow`, which sums ciphertexts.
   Central DP wraps the strategy in Flower's ``DifferentialPrivacyClientSideFixedClipping``.
5. The model is released (under CKKS one bank decrypts the final aggregate), saved, evaluated
   on the holdout rows when the coordinator can read them, and compared with centralised
   pooled training of the same model (:mod:`parties.horizontal.evaluation`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import Parameters, parameters_to_ndarrays
from flwr.serverapp import Grid

from fedcredit.config import Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import local
from fedcredit.horizontal.aggregation import auto_clipping_range, auto_quantization_range, auto_shares
from fedcredit.horizontal.messages import (
    InstallReply,
    InstallRequest,
    KeygenReply,
    KeygenRequest,
    SetupReply,
    SetupRequest,
    pack_chunks,
    pack_floats,
)
from fedcredit.horizontal.settings import HorizontalSettings, from_scenario
from parties.common.recorder import Recorder
from parties.common.relay import wait_for_nodes
from parties.horizontal import flower_legacy as legacy
from parties.horizontal import transport as ht
from parties.horizontal.audit import RecordingGrid
from parties.horizontal.ckks_round import CkksFitWorkflow
from parties.horizontal.evaluation import centralised_baseline, evaluate, mode_details, save_model
from parties.horizontal.run_state import Bank, HorizontalRun, HorizontalRunError, ask, expect
from parties.horizontal.secagg_workflow import RoundOutcome, halt_message
from parties.horizontal.strategy import CentralDp, HorizontalStrategy

log = logging.getLogger(__name__)


def _setup(grid: RecordingGrid, scenario: Scenario, settings: HorizontalSettings) -> list[Bank]:
    node_ids = wait_for_nodes(grid, len(scenario.parties), settings.timeout)
    req = SetupRequest(scenario_sha256=scenario.config_hash, want_x25519=settings.aggregation == "ckks")
    replies = ask(grid, node_ids, "horizontal_setup", {n: req for n in node_ids}, settings.timeout)
    wanted = hdata.bank_names(scenario)
    found: dict[str, Bank] = {}
    for nid, rep in replies.items():
        if rep.has_error():  # e.g. a spare simulated node that is no party of this scenario
            log.info("node %s did not join the horizontal run: %s", nid, rep.error.reason)
            continue
        r = ht.read_payload(rep, SetupReply)
        grid.names[nid] = r.party
        if r.role != "bank":
            continue
        if r.party in found:
            raise HorizontalRunError(f"{r.party}: two nodes claim to be this bank")
        found[r.party] = Bank(
            r.party, nid, r.n_train, r.n_features, r.schema_sha256, bytes(r.x25519_public), bytes(r.x25519_sig)
        )
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


def _ckks_keys(run: HorizontalRun) -> None:
    """Key generation at the first bank, sealed hand-over to the others, coordinator keyless."""
    leader, others = run.banks[0], run.banks[1:]
    timeout = run.settings.timeout
    req = KeygenRequest(
        scenario_sha256=run.scenario.config_hash,
        recipients=[b.name for b in others],
        recipient_publics=[b.x25519 for b in others],
        recipient_sigs=[b.x25519_sig for b in others],
    )
    reply = expect(
        ask(run.grid, [leader.node_id], "horizontal_keygen", {leader.node_id: req}, timeout).get(leader.node_id),
        KeygenReply,
        leader.name,
        "ckks key generation",
    )
    run.ckks_agg = hckks.CkksAggregator(reply.params_context, expect_params_fp=reply.params_fp)
    run.key_fp = reply.key_fp
    payloads = {
        b.node_id: InstallRequest(
            scenario_sha256=run.scenario.config_hash,
            envelope=env,
            key_fp=reply.key_fp,
            params_fp=reply.params_fp,
            sender=leader.name,
            envelope_sig=sig,
        )
        for b, env, sig in zip(others, reply.envelopes, reply.envelope_sigs, strict=True)
    }
    replies = ask(run.grid, list(payloads), "horizontal_install", payloads, timeout)
    for b in others:
        try:
            got = expect(replies.get(b.node_id), InstallReply, b.name, "ckks key install")
            if got.key_fp != reply.key_fp or got.params_fp != reply.params_fp:
                raise hckks.CkksContextMismatch(
                    f"{b.name}: installed CKKS context {got.params_fp[:12]}/"
                    f"{got.key_fp[:12]} differs from the run's "
                    f"{reply.params_fp[:12]}/{reply.key_fp[:12]}"
                )
        except (HorizontalRunError, hckks.CkksContextMismatch) as exc:
            raise HorizontalRunError(f"CKKS key hand-over failed: {exc}") from None
    run.flush()


def _fit_workflow(run: HorizontalRun, strategy: HorizontalStrategy, rounds: int) -> legacy.FitWorkflow:
    s = run.settings
    if s.aggregation == "plain":
        return legacy.PLAIN_FIT_WORKFLOW
    if s.aggregation == "ckks":
        return CkksFitWorkflow(run, strategy, rounds)
    shares, threshold = auto_shares(len(run.banks))
    threshold = s.secagg.reconstruction_threshold or threshold

    def clipping_range(rnd: int, params: Parameters) -> float:
        """Chosen from the global model before each round (the range must hold every update)."""
        if strategy.task == "stats":
            chosen = local.STATS_BOUND
        elif s.secagg.clipping_range > 0:
            chosen = s.secagg.clipping_range
        else:
            chosen = auto_clipping_range(
                parameters_to_ndarrays(params), s.secagg.clipping_headroom, s.secagg.min_clipping_range
            )
        if strategy.task == "train":
            run.secagg_ranges.append(chosen)
        run.grid.round = strategy.ledger_round(rnd)
        return chosen

    def after(rnd: int, outcome: RoundOutcome) -> None:
        """A halted SecAgg+ round is an error naming the banks, not a silently skipped round."""
        if rnd not in strategy.aggregated:
            run.flush()
            refused = [r for r in run.grid.refusals if r["round"] == run.grid.round]
            if refused:  # a bank's own policy stopped the round: name it (status.json)
                from parties.common.relay import RunFailed

                stage = str(refused[0]["step"]).rsplit(".", 1)[-1]  # "horizontal.secagg.setup" -> "setup"
                raise RunFailed(refused[0]["party"], f"secagg+ {stage}", refused[0]["reason"])
            raise HorizontalRunError(halt_message(rnd, outcome, run.grid.name))

    return legacy.SecAggPlusRound(
        clipping_range,
        after,
        num_shares=s.secagg.num_shares or shares,
        reconstruction_threshold=threshold,
        max_weight=float(run.n_ref),
        clipping_range=s.secagg.min_clipping_range,
        quantization_range=s.secagg.quantization_range
        or auto_quantization_range(len(run.banks), s.secagg.modulus_range),
        modulus_range=s.secagg.modulus_range,
        timeout=s.timeout,
    )


def _rounds(
    run: HorizontalRun, context: Context, strategy: HorizontalStrategy, rounds: int, wrapped: Any = None
) -> Parameters:
    """``rounds`` rounds of ``strategy`` (or of its DP wrapper); the final global parameters."""
    return legacy.run_rounds(run.grid, context, wrapped or strategy, rounds, _fit_workflow(run, strategy, rounds))


def _standardise(run: HorizontalRun, context: Context) -> None:
    """Federated feature moments with the run's aggregation mode (one extra round)."""
    d = run.banks[0].n_features
    strategy = HorizontalStrategy(run, "stats", [np.zeros((2, d))])
    params = _rounds(run, context, strategy, 1)
    if params.tensor_type == ht.CKKS_TENSOR_TYPE:
        run.stats_cfg = {ht.CFG_STATS_CKKS: pack_chunks(list(params.tensors)), ht.CFG_STATS_LEN: 2 * d + 1}
    else:
        run.moments = parameters_to_ndarrays(params)[0]
        mean, std = hdata.moments_to_mean_std(run.moments)
        run.stats_cfg = {ht.CFG_MEAN: pack_floats(mean), ht.CFG_STD: pack_floats(std)}
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
    run_ = HorizontalRun(scenario=scenario, settings=settings, recorder=recorder, grid=rgrid, banks=banks)
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
        wrapped = CentralDp(
            strategy,
            noise_multiplier=settings.dp.noise_multiplier,
            clipping_norm=settings.dp.clipping_norm,
            num_sampled_clients=len(banks),
        )
    params = _rounds(run_, context, strategy, settings.rounds, wrapped)
    train_seconds = time.time() - t_train
    log.info("%s: %d rounds trained in %.1f s", scenario.name, settings.rounds, train_seconds)
    final = strategy.released[settings.rounds] if settings.aggregation == "ckks" else parameters_to_ndarrays(params)
    names = run_.holdout.feature_names if run_.holdout is not None else None
    release = save_model(run_, final, out_dir, names)
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
        "flower_round_trips": rgrid.calls,
        "model_sha256": release["sha256"],
        "model_path": release["path"],
    }
    if run_.holdout is not None:
        result.update(evaluate(run_, final))
        if settings.baseline:
            base = centralised_baseline(scenario, settings)
            if base is not None:
                result["centralised"] = {"pooled_same_model": base}
    log.info("%s: evaluated at %.1f s", scenario.name, time.time() - t0)
    result.update(mode_details(run_, settings))
    result["seconds"] = round(time.time() - t0, 2)
    return result
