"""The ``align`` phase in ``[psi] mode = "unbalanced"``: the node side of unbalanced PSI.

:class:`parties.vertical.alignment_phases.AlignPhase` dispatches here for building and restoring
its party; consent filtering (the bank inputs only consented ids), the result contract
(``common_rows`` re-sorted by USCC on both sides) and the summary stay AlignPhase's.

Node facts (docs/protocols/psi.md, "Unbalanced PSI in a run"): the key period is the scenario's
``[psi] key_period`` (default: the current UTC month, as both nodes read their clock; a
disagreement at a month's turn is refused by the protocol's period check). The centre's prepared
table and grants and the bank's caches live in the node's store directory: node_config
``psi-store``, else ``[psi] store``/<node name>, else ``<node dir>/psi-store``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fedcredit.config.sections import PsiSettings
from parties.common.node import NodeRuntime
from protocols.psi.unbalanced.relay import UbBankParty, UbCentreParty
from protocols.psi.unbalanced.store import BankStore, CentreStore

UbParty = UbBankParty | UbCentreParty


def is_unbalanced(node: NodeRuntime) -> bool:
    return node.scenario.settings(PsiSettings).mode == "unbalanced"


def key_period(psi: PsiSettings) -> str:
    """The configured key period, or the current UTC month."""
    return psi.key_period or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")


def store_dir(node: NodeRuntime) -> Path:
    """Where this node keeps unbalanced-PSI state across runs (never the run's own directory alone)."""
    cfg = node.context.node_config
    if "psi-store" in cfg:
        return Path(str(cfg["psi-store"]))
    psi = node.scenario.settings(PsiSettings)
    if psi.store:
        return Path(node.scenario.resolve(psi.store)) / node.name
    return node.dir / "psi-store"


def _options(node: NodeRuntime) -> dict:
    psi = node.scenario.settings(PsiSettings)
    if node.role == "bank":
        return {"store": BankStore(store_dir(node)), "workers": psi.workers}
    return {
        "store": CentreStore(store_dir(node)),
        "truncate": psi.truncate,
        "query_budget": psi.query_budget,
        "workers": psi.workers,
    }


def create_party(node: NodeRuntime, peer: str, ids: list[str]) -> UbParty:
    """This node's unbalanced-PSI party for the run (``ids``: the bank's consented ids, or the centre's)."""
    psi = node.scenario.settings(PsiSettings)
    cls = UbBankParty if node.role == "bank" else UbCentreParty
    return cls(node.name, peer, ids, session=str(node.get("run_id")), period=key_period(psi), **_options(node))


def restore_party(node: NodeRuntime, state: bytes, ids: list[str]) -> UbParty:
    cls = UbBankParty if node.role == "bank" else UbCentreParty
    return cls.from_state(state, ids, session=str(node.get("run_id")), **_options(node))
