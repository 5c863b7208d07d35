"""The one module that touches Flower's legacy round API: LegacyContext, DefaultWorkflow, SecAgg+.

Flower offers secure aggregation (SecAgg+) only as legacy pieces: ``SecAggPlusWorkflow`` run
inside ``DefaultWorkflow`` with a ``LegacyContext`` on the coordinator, and ``secaggplus_mod``
around a legacy ``FitIns``/``FitRes`` handler on the nodes. Horizontal training therefore uses
the legacy round shape for every aggregation mode; everything that depends on that API lives
here, so moving to Flower's Message API is a change of this module only:

* coordinator: :func:`run_rounds`, :class:`SecAggPlusRound` (over
  :class:`~parties.horizontal.secagg_workflow.DropoutTolerantSecAggPlus`, which subclasses
  Flower's workflow to tolerate dropouts at every stage), the fit-workflow helpers
  (:func:`current_round`, :func:`configure_fit`, :func:`fit_message`, :func:`set_global`);
* both ends: FitIns/FitRes <-> Message conversions, :func:`secagg_stage`;
* banks: :func:`through_secagg`, :func:`secagg_guard`, :func:`answer_fit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client import NumPyClient
from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
from flwr.client.mod import secaggplus_mod
from flwr.common import FitIns, FitRes, Parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.serverapp import Grid

from fedcredit.horizontal.aggregation import UpdateRejected, validate_update
from parties.horizontal.secagg_workflow import DropoutTolerantSecAggPlus, RoundOutcome

Handler = Callable[[Message, Context], Message]
FitWorkflow = Callable[[Grid, Context], None]
PLAIN_FIT_WORKFLOW: FitWorkflow = default_fit_workflow

# -- coordinator ------------------------------------------------------------------------------


def run_rounds(grid: Grid, context: Context, strategy: Strategy, rounds: int, fit_workflow: FitWorkflow) -> Parameters:
    """``rounds`` fit rounds of ``strategy`` (no federated evaluation); returns the final global parameters."""
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    DefaultWorkflow(fit_workflow=fit_workflow, evaluate_workflow=lambda _g, _c: None)(grid, legacy)
    return compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)


def current_round(context: Context) -> tuple[int, Parameters]:
    """Inside a fit workflow: the round number and the global parameters going out."""
    cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
    rnd = cast(int, cfg[WorkflowKey.CURRENT_ROUND])
    params = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    return rnd, params


def configure_fit(context: Context, rnd: int, params: Parameters) -> list[tuple[ClientProxy, FitIns]]:
    """Inside a fit workflow: the strategy's instructions for this round."""
    legacy = cast(LegacyContext, context)
    return legacy.strategy.configure_fit(rnd, params, legacy.client_manager)


def set_global(context: Context, params: Parameters) -> None:
    """Inside a fit workflow: the round's aggregate becomes the global parameters."""
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(params, keep_input=True)


def fit_message(ins: FitIns, node_id: int, rnd: int) -> Message:
    return Message(
        content=compat.fitins_to_recorddict(ins, True),
        dst_node_id=node_id,
        message_type=MessageType.TRAIN,
        group_id=str(rnd),
    )


class SecAggPlusRound(DropoutTolerantSecAggPlus):
    """Flower's SecAggPlusWorkflow (made dropout-tolerant) with two hooks: ``choose_range(round,
    global parameters)`` sets the clipping range before each round, ``after_round(round,
    outcome)`` checks its outcome (who answered at which stage, where it stopped)."""

    def __init__(
        self,
        choose_range: Callable[[int, Parameters], float],
        after_round: Callable[[int, RoundOutcome], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.choose_range, self.after_round = choose_range, after_round

    def __call__(self, grid: Grid, context: Context) -> None:
        rnd, params = current_round(context)
        self.clipping_range = self.choose_range(rnd, params)
        super().__call__(grid, context)
        self.after_round(rnd, self.outcome)


# -- both ends --------------------------------------------------------------------------------


def secagg_stage(message_type: str, content: Any) -> str | None:
    """The SecAgg+ stage of a ``train`` request, None for a plain fit round.

    Must be read *before* Flower's secaggplus_mod consumes the stage field."""
    if message_type != MessageType.TRAIN or RECORD_KEY_CONFIGS not in content.config_records:
        return None
    return str(content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE, "?"))


def fitins_of(msg: Message) -> FitIns:
    return compat.recorddict_to_fitins(msg.content, keep_input=True)


def fitres_of(msg: Message) -> FitRes:
    return compat.recorddict_to_fitres(msg.content, keep_input=True)


def with_fitins(msg: Message, ins: FitIns) -> Message:
    msg.content = compat.fitins_to_recorddict(ins, keep_input=True)
    return msg


def with_fitres(msg: Message, res: FitRes, *, keep_input: bool = True) -> Message:
    msg.content = compat.fitres_to_recorddict(res, keep_input=keep_input)
    return msg


# -- banks ------------------------------------------------------------------------------------


def is_secagg_round(msg: Message) -> bool:
    return RECORD_KEY_CONFIGS in msg.content.config_records


def through_secagg(msg: Message, ctx: Context, inner: Handler) -> Message:
    """Run ``inner`` inside Flower's SecAgg+ client protocol (which masks its update)."""
    return secaggplus_mod(msg, ctx, inner)


def secagg_guard(msg: Message, ctx: Context, call_next: Handler, *, party: str) -> Message:
    """Check the update against the SecAgg+ clipping range before Flower masks (and would clip) it."""
    shapes = [a.shape for a in parameters_to_ndarrays(fitins_of(msg).parameters)]
    out = call_next(msg, ctx)
    if out.has_error():
        return out
    res = fitres_of(out)
    st = ctx.state.config_records[RECORD_KEY_STATE]
    clip, max_weight, q = _number(st["clipping_range"]), _number(st["max_weight"]), int(_number(st["target_range"]))
    n = int(res.num_examples)
    if not 0 < n <= max_weight:
        raise UpdateRejected(party, f"sample count {n} outside (0, SecAgg+ max_weight {max_weight:g}]")
    scale = round(n / max_weight * q) / q  # exactly the factor secaggplus_mod multiplies by
    validate_update(party, parameters_to_ndarrays(res.parameters), shapes, bound=clip, scale=scale)
    res.metrics = {}
    return with_fitres(out, res)


def _number(value: object) -> float:
    if not isinstance(value, (int, float)):
        raise TypeError(f"SecAgg+ state holds {type(value).__name__} where a number belongs")
    return float(value)


def answer_fit(client: NumPyClient) -> Handler:
    """The innermost handler of a bank's fit round: the legacy NumPyClient does the work."""

    def handler(msg: Message, ctx: Context) -> Message:
        return handle_legacy_message_from_msgtype(lambda _c: client.to_client(), msg, ctx)

    return handler
