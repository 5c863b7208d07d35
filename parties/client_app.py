"""The data nodes' Flower ClientApp (credit centre and banks run the same app).

The node's party and role come from the scenario (simulation: by partition id) or from the
SuperNode's ``--node-config`` (deployment). Vertical protocols use relayed ``query`` messages;
horizontal training uses Flower's ``train``/``evaluate`` messages (with SecAgg+ as a mod).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.clientapp import ClientApp

from fedcredit import config
from fedcredit.config import Scenario
from parties import vertical_client


def build_client_app(scenario: Scenario | None = None, out_dir: Path | None = None) -> ClientApp:
    app = ClientApp()

    def scenario_of(context: Context) -> Scenario:
        if scenario is not None:
            return scenario
        path = context.node_config.get("scenario") or context.run_config.get("scenario")
        if not path:
            raise RuntimeError("no scenario: set node_config 'scenario' or run_config 'scenario'")
        return config.load(str(path))

    vertical_client.register(app, scenario_of, out_dir)
    try:
        from parties import horizontal_client
    except ImportError:  # horizontal mode not installed in this build
        pass
    else:
        horizontal_client.register(app, scenario_of, out_dir)
    return app


app = build_client_app()
