"""Each node's operator configuration of identities: its own node key and its peers' public keys.

A node verifies every envelope against the peer public keys *its own operator* configured, never
against keys the coordinator announces (the coordinator may lie). Where they come from:

* deployment: ``fedcredit keys`` provisions each party's Ed25519 node key (the egress key, which
  also signs envelopes); operators compare fingerprints out of band (docs/deploy.md) and give the
  SuperNode ``--node-config "egress-key='...' peer-keys='peers.json'"``, where ``peers.json`` maps
  each party name to its public key (hex);
* simulation and in-process runs: the driver (``fedcredit simulate``,
  :func:`parties.in_process.run_scenario_in_process`) calls :func:`provision` before the run, which
  writes ``<run>/keys/<party>/egress.key`` and ``<run>/keys/peers.json``: the stand-in for what each
  party's operator would have configured. The coordinator's code never writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedcredit.config import Scenario
from fedcredit.ledger import (
    generate_signing_key,
    load_private_key,
    public_key_from_hex,
    public_key_hex,
    save_private_key,
)

KEYS_DIR = "keys"
PEERS_FILE = "peers.json"
KEY_FILE = "egress.key"


class PeerKeysMissing(RuntimeError):
    """This node's operator configured no peer keys, so it cannot accept any envelope."""


def provision(scenario: Scenario, out_dir: Path) -> Path:
    """Make a node key for every party of ``scenario`` under ``out_dir/keys`` (kept if present)
    and write the peers file every node trusts; returns the keys directory."""
    root = Path(out_dir) / KEYS_DIR
    peers: dict[str, str] = {}
    if (root / PEERS_FILE).exists():  # several scenarios may share one key directory (sweeps)
        peers.update(json.loads((root / PEERS_FILE).read_text()))
    for spec in scenario.parties:
        path = root / spec.name / KEY_FILE
        if path.exists():
            key = load_private_key(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = generate_signing_key()
            save_private_key(key, path)
        peers[spec.name] = public_key_hex(key)
    write_peers(root / PEERS_FILE, peers)
    return root


def write_peers(path: Path, peers: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(peers, indent=2, sort_keys=True))
    return path


def provisioned_key(out_dir: Path | None, party: str) -> Ed25519PrivateKey | None:
    """The simulation-provisioned node key of ``party`` (None if the driver provisioned none)."""
    if out_dir is None:
        return None
    path = Path(out_dir) / KEYS_DIR / party / KEY_FILE
    return load_private_key(path) if path.exists() else None


def load_peers(path: Path) -> dict[str, Ed25519PublicKey]:
    """Party name -> Ed25519 public key, from an operator's peers file; names the file on error."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PeerKeysMissing(f"cannot read the peer keys file {path}: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise PeerKeysMissing(f"{path}: expected a JSON object {{party: public key hex}}")
    try:
        return {str(k): public_key_from_hex(v) for k, v in raw.items()}
    except Exception as exc:  # noqa: BLE001 - a bad key names the file
        raise PeerKeysMissing(f"{path}: {exc}") from None


def peers_path(node_config: dict, out_dir: Path | None) -> Path:
    """Where this node's operator put its peers file (node_config ``peer-keys`` or the simulation's)."""
    if "peer-keys" in node_config:
        return Path(str(node_config["peer-keys"]))
    if out_dir is not None and (Path(out_dir) / KEYS_DIR / PEERS_FILE).exists():
        return Path(out_dir) / KEYS_DIR / PEERS_FILE
    raise PeerKeysMissing(
        "no peer keys configured: set node_config 'peer-keys' to the operator's peers file "
        "(deployment) or provision the run's keys (simulation), so envelopes can be authenticated"
    )
