"""The coordinator's Flower strategy for horizontal rounds: FedAvg by sample counts over the
scenario's banks, validation of plaintext updates, per-round evaluation and ledger records.

Central DP wraps it in Flower's client-side fixed clipping (:class:`CentralDp`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flwr.common import FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

from fedcredit.horizontal import local
from fedcredit.horizontal.aggregation import UpdateRejected, validate_update, weighted_average
from parties.horizontal import transport as ht
from parties.horizontal.evaluation import evaluate
from parties.horizontal.run_state import MIN_CONTRIBUTORS, Bank, HorizontalRun, HorizontalRunError

log = logging.getLogger(__name__)


class HorizontalStrategy(FedAvg):
    """FedAvg weighted by sample counts, restricted to the scenario's banks.

    ``task`` is "train" (model rounds) or "stats" (one round of feature moments). In plain mode
    every update is validated here (NaN/Inf, shape, range) and a bad one is rejected with the
    bank named while the others are averaged. Under SecAgg+ the workflow hands over the already
    unmasked aggregate. ``evaluate`` is Flower's per-round hook: it evaluates plaintext global
    models on the holdout and writes the round's ledger records.
    """

    def __init__(self, run: HorizontalRun, task: str, initial: list[np.ndarray]) -> None:
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
            ht.CFG_SCENARIO: self.run.scenario.config_hash,
            ht.CFG_ROUND: server_round,
            ht.CFG_TASK: self.task,
            ht.CFG_N_REF: self.run.n_ref,
        }
        if self.task == "train":
            cfg.update(self.run.stats_cfg)
            fault = self.run.settings.fault_for(bank.name, server_round)
            if fault:
                cfg[ht.CFG_FAULT] = fault
        if self.run.key_fp:
            cfg[ht.CFG_KEY_FP] = self.run.key_fp
        return cfg

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.run.grid.round = self.ledger_round(server_round)
        # num_available() makes Flower's client-manager thread register the grid's nodes now (a bare
        # wait_for would sleep until its next 5 s poll); a node that went away must not stall a round
        client_manager.num_available()
        client_manager.wait_for(len(self.run.banks), timeout=int(min(10, self.run.settings.timeout)))
        proxies = {p.node_id: p for p in client_manager.all().values()}
        out = []
        for bank in self.run.banks:
            if bank.node_id not in proxies:
                self.run.recorder.event(
                    "dropout",
                    {"party": bank.name, "round": server_round, "step": "configure", "reason": "node not connected"},
                )
                continue
            cfg = self.round_config(server_round, bank)
            if self.run.ckks_agg is not None and parameters.tensor_type == ht.CKKS_TENSOR_TYPE:
                cfg[ht.CFG_LEN] = sum(int(np.prod(s)) for s in self.shapes()) + 1
            out.append((proxies[bank.node_id], FitIns(parameters, cfg)))
        return out

    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of an update in this task (the model's arrays, or the 2 x features moments)."""
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
                validate_update(bank.name, arrays, self.shapes(), bound=bound)
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
        if parameters.tensor_type != ht.CKKS_TENSOR_TYPE:
            arrays = parameters_to_ndarrays(parameters)
        elif server_round in self.released:
            arrays = self.released[server_round]
        if arrays is not None and self.run.holdout is not None:
            entry.update(evaluate(self.run, arrays))
        self.run.history.append(entry)
        self.run.flush({k: v for k, v in entry.items() if k != "seconds"})
        if "auc" in entry:
            return entry["log_loss"], {"auc": entry["auc"]}
        return None


class CentralDp(DifferentialPrivacyClientSideFixedClipping):
    """Flower's central-DP wrapper, but a dropout does not void the round: the noise is scaled
    to the number of banks that actually contributed (Flower returns no update at all when any
    client failed)."""

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        planned = self.num_sampled_clients
        self.num_sampled_clients = max(1, len(results))
        try:
            return super().aggregate_fit(server_round, results, [])
        finally:
            self.num_sampled_clients = planned
