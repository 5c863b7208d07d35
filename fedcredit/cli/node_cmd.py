"""``fedcredit node serve``: run a party's long-lived node service (docs/deploy.md).

The operator starts it under the account that may read the party's data and keys; the
SuperNode (another account) only gets the socket path. The service answers the SuperNode's
forwarded messages with the installed handlers, keeps caches warm and persists each run's
protocol state after every message. SIGTERM / Ctrl-C stop it cleanly (socket removed).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from fedcredit.cli.output import fail

console = Console()
log = logging.getLogger(__name__)

node_app = typer.Typer(no_args_is_help=True, add_completion=False, help="A party's long-lived node service.")


@node_app.command("serve")
def serve(
    config_path: Path = typer.Option(..., "--config", "-c", help="The node's TOML (party, data, keys, scenario)."),
    socket_path: Path = typer.Option(None, "--socket", help="Unix socket (default: config 'socket')."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Persisted protocol state (default: config)."),
) -> None:
    """Serve this party's protocol steps to its SuperNode's forwarding ClientApp."""
    from fedcredit.config import ConfigError
    from fedcredit.deploy.node_config import NodeConfigError, load_node_config
    from parties.client_app import build_client_app
    from parties.common.local_channel import ChannelError
    from parties.common.node_service import NodeService

    try:
        cfg = load_node_config(config_path, socket=socket_path, state_dir=state_dir)
    except (NodeConfigError, ConfigError) as exc:
        raise fail(console, exc) from None
    service = NodeService(
        handler=build_client_app(),
        node_config=cfg.node_config,
        socket_path=cfg.socket,
        state_dir=cfg.state_dir,
        group=cfg.group,
        allowed_uids=cfg.allow_uids,
        dataplane_ca=cfg.dataplane_ca,
    )
    try:
        service.bind()
    except (ChannelError, OSError, KeyError) as exc:
        raise fail(console, f"cannot open the node socket {cfg.socket}: {exc}") from None

    def _stop(signum: int, _frame: Any) -> None:
        log.info("node service: %s, stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(f"node service for {cfg.party!r} on {cfg.socket} (state in {cfg.state_dir})", markup=False)
    service.serve_forever()
    console.print(f"node service for {cfg.party!r} stopped after {service.handled} message(s)", markup=False)


@node_app.command("bundle-hash")
def bundle_hash(
    app_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="The app directory `flwr run` submits."),
) -> None:
    """Print the SHA-256 of the bundle `flwr run` builds from APP_DIR (for --pin-fab-hash)."""
    from flwr.cli.build import build_fab_from_disk

    from fedcredit.deploy.local import bundle_sha256
    from fedcredit.deploy.supernode import BundleRefused, check_bundle

    try:
        check_bundle(build_fab_from_disk(app_dir))
    except BundleRefused as exc:
        raise fail(console, f"{app_dir}: SuperNodes would refuse this bundle: {exc}") from None
    typer.echo(bundle_sha256(app_dir))


def register(app: typer.Typer) -> None:
    """Called from fedcredit.cli.main._register()."""
    app.add_typer(node_app, name="node", help="A party's long-lived node service (owns its data and keys).")
