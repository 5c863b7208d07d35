"""One horizontal round under CKKS: the coordinator sums ciphertexts it cannot decrypt.

The coordinator sends the (encrypted) global model, checks each bank's upload (ciphertext
count, key fingerprint, that every ciphertext loads under the run's parameters) and rejects a
bad one with the bank named; it never holds a key that decrypts. The final aggregate (and, with
``release_each_round``, every aggregate) is decrypted by one bank and released.
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import Context
from flwr.common import Parameters
from flwr.serverapp import Grid

from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal.aggregation import unflatten
from fedcredit.horizontal.messages import ReleaseReply, ReleaseRequest, unpack_chunks
from fedcredit.horizontal.upload_auth import signed_upload
from parties.horizontal import flower_legacy as legacy
from parties.horizontal import transport as ht
from parties.horizontal.run_state import MIN_CONTRIBUTORS, HorizontalRun, HorizontalRunError, ask, expect
from parties.horizontal.strategy import HorizontalStrategy

log = logging.getLogger(__name__)


class CkksFitWorkflow:
    """The fit workflow of a CKKS run (in place of Flower's plain one)."""

    def __init__(self, run: HorizontalRun, strategy: HorizontalStrategy, rounds: int) -> None:
        self.run, self.strategy, self.rounds = run, strategy, rounds

    def __call__(self, grid: Grid, context: Context) -> None:
        rnd, params = legacy.current_round(context)
        self.run.grid.round = self.strategy.ledger_round(rnd)
        agg = self.run.ckks_agg
        assert agg is not None
        instructions = legacy.configure_fit(context, rnd, params)
        msgs = [legacy.fit_message(ins, proxy.node_id, rnd) for proxy, ins in instructions]
        replies = grid.send_and_receive(msgs, timeout=self.run.settings.timeout)
        length = sum(int(np.prod(s)) for s in self.strategy.shapes()) + 1
        expected = hckks.n_chunks(length, agg.slots)
        loaded = []
        signed: list[dict] = []
        for rep in replies:
            if rep.has_error():
                continue  # recorded by the RecordingGrid
            bank = self.run.by_node[rep.metadata.src_node_id]
            res = legacy.fitres_of(rep)
            try:
                if res.parameters.tensor_type != ht.CKKS_TENSOR_TYPE:
                    raise hckks.CkksContextMismatch(f"{bank.name}: sent an unencrypted update in a ckks run")
                fp = str(res.metrics.get(ht.CFG_KEY_FP, ""))
                if fp != self.run.key_fp:
                    raise hckks.CkksContextMismatch(
                        f"{bank.name}: update encrypted under CKKS key {fp[:12]}…, "
                        f"the run's key is {self.run.key_fp[:12]}…"
                    )
                loaded.append(agg.load(bank.name, res.parameters.tensors, expected))
                signed.append(
                    signed_upload(
                        bank.name,
                        self.strategy.task,
                        int(res.metrics.get(ht.CFG_UPLOAD_ROUND, -1)),
                        list(res.parameters.tensors),
                        bytes(res.metrics.get(ht.CFG_UPLOAD_SIG, b"")),  # type: ignore[arg-type]
                    )
                )
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
        self.run.ckks_signed[self.strategy.task] = signed  # what a releasing bank will re-sum and check
        summed = agg.sum(loaded)
        self.strategy.aggregated[rnd] = len(loaded)
        legacy.set_global(context, Parameters(tensors=summed, tensor_type=ht.CKKS_TENSOR_TYPE))
        if self.strategy.task == "train" and (rnd == self.rounds or self.run.settings.release_each_round):
            weights, moments = release_aggregate(self.run, summed, length)
            self.strategy.released[rnd] = unflatten(weights, self.run.shapes)
            if moments.size and self.run.moments is None:
                self.run.moments = moments.reshape(2, -1)


def release_aggregate(run: HorizontalRun, summed: list[bytes], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ask a bank to decrypt the aggregate (+ standardisation moments): the model release."""
    stats_chunks = unpack_chunks(run.stats_cfg[ht.CFG_STATS_CKKS]) if ht.CFG_STATS_CKKS in run.stats_cfg else []
    stats_len = int(run.stats_cfg.get(ht.CFG_STATS_LEN, 0))
    errors = []
    for bank in run.banks:  # the first bank that answers releases
        req = ReleaseRequest(
            scenario_sha256=run.scenario.config_hash,
            chunks=summed,
            length=length,
            key_fp=run.key_fp,
            stats_chunks=stats_chunks,
            stats_length=stats_len,
            uploads=run.ckks_signed.get("train", []),
            stats_uploads=run.ckks_signed.get("stats", []) if stats_chunks else [],
        )
        rep = ask(run.grid, [bank.node_id], "horizontal_release", {bank.node_id: req}, run.settings.timeout)
        try:
            got = expect(rep.get(bank.node_id), ReleaseReply, bank.name, "release")
        except HorizontalRunError as exc:
            errors.append(str(exc))
            continue
        if got.weights.size != length - 1:
            raise HorizontalRunError(f"{bank.name}: released {got.weights.size} weights, expected {length - 1}")
        return got.weights, got.moments
    raise HorizontalRunError("no bank could release the CKKS aggregate: " + "; ".join(errors))
