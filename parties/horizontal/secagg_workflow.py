"""Flower's SecAgg+ workflow with dropout bookkeeping per stage, so a bank may drop at any stage.

Flower's ``SecAggPlusWorkflow`` (flwr 1.42) fixes the sampled node set and every node's neighbour
set at the setup stage and, at unmask, treats every sampled node that did not send a masked
vector as *dead*: it asks the survivors for shares of the dead node's mask key and re-creates the
pairwise masks between that node and *all* its setup-time neighbours. That is right only for a
node that dropped after its key shares went out. A bank that was silent at setup or key sharing
(one offline for good after an earlier round, one that went away mid-protocol) never handed out
shares, and the survivors never masked with it (``secaggplus_mod`` masks only with the sources of
the shares it was forwarded). Flower still lists it as dead, every survivor fails at unmask with
``KeyError`` on its id, and the round halts; had it got that far, the coordinator would also have
added pairwise masks that are in nobody's vector.

:class:`DropoutTolerantSecAggPlus` records, per stage, which banks were asked and which answered,
and after key sharing narrows the protocol to the banks whose shares were forwarded (SecAgg's
U2): ``sampled_node_ids`` and every neighbour set become those banks only. At unmask a bank is
then *active* (its masked vector arrived: its self-mask seed is reconstructed) or *dead* (its
shares went out but its vector did not: its mask key is reconstructed), never both, and a bank
that dropped earlier is neither. A round that cannot finish leaves :attr:`outcome` saying at
which stage and which banks were missing, for the caller's error message.

Safety is Flower's: every survivor is asked at most once per round (``secaggplus_mod`` enforces
the stage order) and for one share per node; the bank-side guard
(:func:`parties.horizontal.policy.check_unmask_request`) refuses a request that names a node both
active and dead, and each bank's policy requires a threshold above half the shares, so a
coordinator that tells different banks different stories cannot collect both secrets of a bank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Context
from flwr.common.secure_aggregation.secaggplus_constants import Stage
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid


class SecAggInvariantBroken(RuntimeError):
    """The workflow's own bookkeeping would list a node as both active and dead (never sent)."""


@dataclass
class StageRecord:
    """Who was asked at one stage and who answered (node ids); ``stage`` is Flower's stage name,
    as in the ledger's ``horizontal.secagg.<stage>`` steps."""

    stage: str
    asked: frozenset[int]
    answered: frozenset[int]

    @property
    def silent(self) -> frozenset[int]:
        return self.asked - self.answered


@dataclass
class RoundOutcome:
    """What happened in one SecAgg+ round: per stage who answered; where and why it stopped."""

    threshold: int = 0
    stages: list[StageRecord] = field(default_factory=list)
    halted_at: str | None = None
    short: dict[int, int] = field(default_factory=dict)  # node -> shares/neighbours left (< threshold)

    def dropped(self) -> dict[int, str]:
        """Node id -> the stage it stopped answering at (the first one)."""
        out: dict[int, str] = {}
        for rec in self.stages:
            for nid in sorted(rec.silent):
                out.setdefault(nid, rec.stage)
        return out

    def answered_last(self) -> frozenset[int]:
        return self.stages[-1].answered if self.stages else frozenset()


class DropoutTolerantSecAggPlus(SecAggPlusWorkflow):
    """``SecAggPlusWorkflow`` that survives a bank dropping at any stage (see the module doc)."""

    outcome: RoundOutcome

    def __call__(self, grid: Grid, context: Context) -> None:
        self.outcome = RoundOutcome()
        super().__call__(grid, context)

    def _staged(self, stage: str, ok: bool, asked: set[int], state: WorkflowState) -> bool:
        self.outcome.threshold = state.threshold
        self.outcome.stages.append(StageRecord(stage, frozenset(asked), frozenset(state.active_node_ids)))
        if not ok and self.outcome.halted_at is None:
            self.outcome.halted_at = stage
            self.outcome.short = self._short(state)
        return ok

    @staticmethod
    def _short(state: WorkflowState) -> dict[int, int]:
        """Nodes whose masks cannot be reconstructed: fewer than ``threshold`` neighbours answered."""
        return {
            nid: n
            for nid in sorted(state.sampled_node_ids)
            if (n := len(state.nid_to_neighbours.get(nid, set()) & state.active_node_ids)) < state.threshold
        }

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        ok = super().setup_stage(grid, context, state)
        return self._staged(Stage.SETUP, ok, set(state.sampled_node_ids), state)

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        asked = set(state.active_node_ids)
        ok = super().share_keys_stage(grid, context, state)
        # The banks whose shares were forwarded are the only ones any survivor masks with: a bank
        # silent before this point is out of the round (neither active nor dead at unmask).
        holders = set(state.active_node_ids)
        state.sampled_node_ids = holders
        state.nid_to_neighbours = {
            nid: nbrs & holders for nid, nbrs in state.nid_to_neighbours.items() if nid in holders
        }
        return self._staged(Stage.SHARE_KEYS, ok and self._check_threshold(state), asked, state)

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        asked = set(state.active_node_ids)
        ok = super().collect_masked_vectors_stage(grid, context, state)
        return self._staged(Stage.COLLECT_MASKED_VECTORS, ok, asked, state)

    def unmask_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        active = set(state.active_node_ids)
        if not active <= state.sampled_node_ids:
            raise SecAggInvariantBroken(
                f"SecAgg+ unmask: nodes {sorted(active - state.sampled_node_ids)} would be active without "
                "having handed out key shares"
            )
        ok = super().unmask_stage(grid, context, state)
        return self._staged(Stage.UNMASK, ok, active, state)


def halt_message(rnd: int, outcome: RoundOutcome, name: Callable[[int], str]) -> str:
    """The error of a round that stopped: the stage, the threshold, who answered, who dropped where.

    ``name`` turns a node id into its party name (the recording grid's)."""

    def names(nids: Iterable[int]) -> str:
        return ", ".join(sorted(name(n) for n in nids)) or "none"

    stage = outcome.halted_at or "an unknown stage"
    dropped = outcome.dropped()
    gone = "; ".join(f"{name(n)} at {st}" for n, st in sorted(dropped.items(), key=lambda kv: name(kv[0])))
    text = (
        f"round {rnd}: SecAgg+ stopped at {stage}: too few banks left to reconstruct the masks "
        f"(threshold {outcome.threshold}): {len(outcome.answered_last())} answered ({names(outcome.answered_last())})"
        f"; dropped: {gone or 'none'}"
    )
    if outcome.short:
        text += f"; masks of {names(outcome.short)} cannot be removed (fewer than {outcome.threshold} shares)"
    return text
