"""The data nodes' Flower ClientApp (credit centre and banks run the same app).

The node's party and role come from the scenario (simulation: by partition id) or from the
SuperNode's ``--node-config`` (deployment). Every run starts with the node introduction
(:mod:`parties.common.introduction`); vertical protocols then use relayed ``query`` messages
(:mod:`parties.vertical.client`); horizontal training uses Flower's ``train`` messages and
its own queries (:mod:`parties.horizontal.client`, with SecAgg+ as a mod).

Deployment: the module-level ``app`` (what ``flwr run`` loads) is a forwarder. When the
SuperNode's node config names a ``node-socket``, every message goes to the party's long-lived
node service (``fedcredit node serve``, :mod:`parties.common.node_service`), which runs
:func:`build_client_app` on its own data, keys and persisted state; this process opens nothing.
Without ``node-socket`` (older node configs) the handlers run here, as before. Handler modules
are imported lazily so the per-message ``flwr-clientapp`` process of a forwarder starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from parties.common.forwarder import forward, socket_of

if TYPE_CHECKING:
    from fedcredit.config import Scenario
    from parties.common.handlers import ScenarioProvider


def build_client_app(scenario: Scenario | None = None, out_dir: Path | None = None) -> ClientApp:
    """The nodes' ClientApp; without ``scenario`` each node reads the scenario file its config names."""
    from fedcredit import config
    from parties.common.introduction import register_hello
    from parties.vertical import client as vertical_client

    app = ClientApp()

    def scenario_of(context: Context) -> Scenario:
        if scenario is not None:
            return scenario
        path = context.node_config.get("scenario") or context.run_config.get("scenario")
        if not path:
            raise RuntimeError("no scenario: set node_config 'scenario' or run_config 'scenario'")
        return config.load(str(path))

    register_hello(app, scenario_of, out_dir)
    vertical_client.register(app, scenario_of, out_dir)
    _register_horizontal_lazily(app, scenario_of, out_dir)
    return app


# Message actions of the horizontal handlers (tests check this matches parties.horizontal.client).
HORIZONTAL_QUERIES = ("horizontal_setup", "horizontal_keygen", "horizontal_install", "horizontal_release")


def _register_horizontal_lazily(app: ClientApp, scenario_of: ScenarioProvider, out_dir: Path | None) -> None:
    """Horizontal training needs torch (~6 s to import). In deployment Flower starts a fresh
    ClientApp process for every message, so vertical nodes must not pay for it: the horizontal
    handlers are imported on the first horizontal message only."""
    inner: dict[str, ClientApp] = {}

    def delegate(message: Message, context: Context) -> Message:
        if "app" not in inner:
            from parties.horizontal import client as horizontal_client

            sub = ClientApp()
            horizontal_client.register(sub, lambda ctx, _config_hash: scenario_of(ctx), out_dir)
            inner["app"] = sub
        return inner["app"](message, context)

    app.train()(delegate)
    for action in HORIZONTAL_QUERIES:
        app.query(action)(delegate)


class ForwardingClientApp(ClientApp):
    """Deployment entry point: forward to the node service when the node config names one.

    A ``ClientApp`` subclass because Flower's loader accepts nothing else; every message type
    (``query.*``, ``train``) goes through :meth:`__call__`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local: ClientApp | None = None

    def __call__(self, message: Message, context: Context) -> Message:
        path = socket_of(context)
        if path is not None:
            return forward(path, message, context)
        if self._local is None:  # no node service configured: handle in this process
            self._local = build_client_app()
        return self._local(message, context)


app = ForwardingClientApp()
