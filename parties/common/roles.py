"""Which party a Flower node is.

Simulation: Flower numbers virtual nodes by ``partition-id``; the scenario's ``[parties.*]``
tables, in file order, give each partition its party. Deployment: the operator starts each
SuperNode with ``--node-config "party='bank_a' role='bank' data='...'"``.
"""

from __future__ import annotations

from flwr.app import Context

from fedcredit.config import PartySpec, Scenario


class RoleError(RuntimeError):
    """A node cannot tell which party it is, or claims a role the scenario does not have."""


def resolve_party(context: Context, scenario: Scenario) -> PartySpec:
    cfg = context.node_config
    if "party" in cfg:
        name = str(cfg["party"])
        spec = scenario.party(name)
        if "role" in cfg and str(cfg["role"]) != spec.role:
            raise RoleError(
                f"node says it is {name!r} with role {cfg['role']!r}, "
                f"but the scenario gives {name!r} the role {spec.role!r}"
            )
        if "data" in cfg:
            spec = PartySpec(name=spec.name, role=spec.role, data=str(cfg["data"]), options=spec.options)
        return spec
    if "partition-id" in cfg:
        pid = int(cfg["partition-id"])
        if not 0 <= pid < len(scenario.parties):
            raise RoleError(f"partition-id {pid} but the scenario has {len(scenario.parties)} parties")
        return scenario.parties[pid]
    raise RoleError("node_config has neither 'party' (deployment) nor 'partition-id' (simulation)")
