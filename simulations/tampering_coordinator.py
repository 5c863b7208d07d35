"""A tampering coordinator as a real ServerApp, for deployment tests of the attack suite.

``fedcredit deploy local`` with ``DeployOptions(server_app="simulations.tampering_coordinator:app")``
runs the production coordinator (:func:`parties.server_app.coordinate`) behind a
:class:`simulations.attack_cases.coordinator.Tamper` on the SuperLink's own grid, so the attack
crosses real TLS, real SuperNodes and real ClientApp processes. Which attack: environment variable
``FEDCREDIT_ATTACK`` (``forge-sender``, ``key-substitution`` or ``drop``), inherited by the
SuperLink's ServerApp process. Test-only: no production path loads this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from simulations.attack_cases.coordinator import (
    BANK,
    CENTRE,
    Tamper,
    _first_in,
    _replace_from,
    at_step,
    forge,
    swap_field,
)


def _paillier_swap() -> Tamper:
    from protocols.hetero_lr.messages import LRHello
    from protocols.paillier import generate_keypair

    _, sk = generate_keypair(1024, insecure_test_key=True)
    sub = _replace_from(BANK, lambda e: swap_field(e, LRHello, "public_key", sk.public_key.to_bytes()))
    return Tamper(CENTRE, _first_in("hetero_lr", sub))


TAMPERS = {
    "forge-sender": lambda: Tamper(CENTRE, _first_in("hetero_lr", _replace_from(BANK, lambda e: forge(e)))),
    "key-substitution": _paillier_swap,
    "drop": lambda: Tamper(CENTRE, at_step("hetero_lr", 2, lambda inbox: [e for e in inbox if e.sender != BANK])),
}

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    from parties.server_app import _scenario_from, coordinate

    name = os.environ.get("FEDCREDIT_ATTACK", "")
    if name not in TAMPERS:
        raise RuntimeError(f"FEDCREDIT_ATTACK={name!r}: expected one of {sorted(TAMPERS)}")
    scenario = _scenario_from(context)
    out = Path(str(context.run_config.get("out-dir", f"runs/{scenario.name}")))
    tamper = TAMPERS[name]()
    tamper.install(grid)
    coordinate(grid, context, scenario, out)
    record = {"attack": name, "fired": tamper.fired, "planted": tamper.planted, "dropped": len(tamper.dropped)}
    (out / "attack.json").write_text(json.dumps(record))
