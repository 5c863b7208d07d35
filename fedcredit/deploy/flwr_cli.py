"""The coordinator operator's side of Flower's Control API, through the ``flwr`` CLI.

Flower 1.41 keeps SuperLink connections in ``$FLWR_HOME/config.toml`` (not in the app's
pyproject.toml, which we never touch). :class:`FlwrCli` writes a private FLWR_HOME with one
connection (address + the federation CA as root certificate) and runs ``flwr`` commands against it
with ``--format json``: register SuperNode public keys, list nodes, submit a run, poll its status.
The app itself is a generated directory holding only a ``pyproject.toml`` that points at the
installed ``parties`` package, so the FAB carries no code: each organisation runs the fedcredit
version it installed and audited.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

import fedcredit

log = logging.getLogger(__name__)
CONNECTION = "fedcredit"
SERVER_COMPONENT = "parties.server_app:app"
CLIENT_COMPONENT = "parties.client_app:app"


class FlwrCliError(RuntimeError):
    """A ``flwr`` command failed; the message carries its output."""


def venv_bin(name: str) -> str:
    """Path of a console script installed next to this interpreter (same venv as fedcredit)."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def base_env(flwr_home: Path) -> dict[str, str]:
    """Environment for every Flower process: private FLWR_HOME, no telemetry, no update checks."""
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # SuperExec picks up a waiting ClientApp/ServerApp task every second by default; every
    # protocol step waits for it once per node, so poll faster (documented Flower setting).
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1")
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def write_app_dir(
    app_dir: Path,
    run_config: dict[str, Any],
    *,
    server: str = SERVER_COMPONENT,
    client: str = CLIENT_COMPONENT,
    name: str = "fedcredit",
) -> Path:
    """A Flower app directory whose components live in installed packages.

    ``run_config`` gives the keys (with defaults) that ``flwr run --run-config`` may override:
    Flower rejects overrides of keys not declared here.
    """
    app_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "build-system": {"requires": ["setuptools>=68"], "build-backend": "setuptools.build_meta"},
        "project": {
            "name": name,
            "version": fedcredit.__version__,
            "description": "fedcredit joint credit-risk modelling (code from the installed package)",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedcredit",
                    "components": {"serverapp": server, "clientapp": client},
                    "config": run_config,
                }
            }
        },
    }
    (app_dir / "pyproject.toml").write_text(tomli_w.dumps(doc))
    return app_dir


@dataclass
class FlwrCli:
    """Runs ``flwr`` against one SuperLink with its own FLWR_HOME."""

    flwr_home: Path
    address: str
    root_certificates: Path
    timeout: float = 120.0

    def __post_init__(self) -> None:
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        conn = {"address": self.address, "root-certificates": str(Path(self.root_certificates).resolve())}
        doc = {"superlink": {"default": CONNECTION, CONNECTION: conn}}
        (self.flwr_home / "config.toml").write_text(tomli_w.dumps(doc))

    @property
    def env(self) -> dict[str, str]:
        return base_env(self.flwr_home)

    def call(self, *args: str, check: bool = True) -> dict[str, Any]:
        """Run ``flwr ARGS --format json``; return the parsed JSON object."""
        argv = [venv_bin("flwr"), *args, "--format", "json"]
        try:
            res = subprocess.run(
                argv, capture_output=True, text=True, env=self.env, timeout=self.timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise FlwrCliError(f"`flwr {' '.join(args)}` did not answer within {self.timeout:.0f} s") from None
        data = _json_object(res.stdout)
        if check and (res.returncode != 0 or not data.get("success", False)):
            detail = data.get("error-message") or (res.stderr or res.stdout).strip()[-2000:]
            raise FlwrCliError(f"`flwr {' '.join(args)}` failed (exit {res.returncode}): {detail}")
        return data

    def register(self, public_key: Path, name: str) -> int:
        """Register a SuperNode's auth public key; returns the node id the SuperLink assigned."""
        data = self.call("supernode", "register", str(public_key), CONNECTION, "--name", name)
        return int(data["node-id"])

    def supernodes(self) -> list[dict[str, Any]]:
        return list(self.call("supernode", "list", CONNECTION).get("nodes", []))

    def online_nodes(self) -> set[int]:
        return {int(n["node-id"]) for n in self.supernodes() if n.get("status") == "online"}

    def run(self, app_dir: Path, run_config_file: Path) -> int:
        """Submit the app; returns the run id."""
        data = self.call("run", str(app_dir), CONNECTION, "--run-config", str(run_config_file))
        return int(data["run-id"])

    def run_info(self, run_id: int) -> dict[str, Any]:
        runs = self.call("list", CONNECTION, "--run-id", str(run_id)).get("runs", [])
        return runs[0] if runs else {}

    def stop(self, run_id: int) -> None:
        self.call("stop", str(run_id), CONNECTION, check=False)


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object printed by ``flwr --format json`` (other lines may precede it)."""
    start = text.find("{")
    if start < 0:
        return {}
    try:
        obj = json.loads(text[start:])
    except json.JSONDecodeError:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
        except json.JSONDecodeError:
            return {}
    return obj if isinstance(obj, dict) else {}
