"""The node service's configuration: the one file a party's operator writes (docs/deploy.md, step 4).

The same TOML serves the node service (``fedcredit node serve --config node.toml``), which reads
all of it, and -- in the older layout without a service -- Flower's ``--node-config``. With a
service, the SuperNode's node config holds only ``node-socket``.

Keys: ``party``, ``role``, ``data``, ``node-dir``, ``egress-key``, ``peer-keys`` (the operator's
peers file: the public node keys it trusts), ``scenario`` (as before) and
``socket`` (where the service listens; default ``NODE_DIR/service/node.sock``), ``state-dir``
(persisted protocol state; default ``NODE_DIR/service/state``), ``group`` (an OS group whose
members -- the SuperNode's account -- may use the socket), ``allow-uids`` (extra uids allowed),
``dataplane-ca`` (the federation CA certificate this operator trusts for the coordinator's
streaming data plane; without it the service declines data-plane invitations and every message
goes through Flower).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, NUL included
SERVICE_KEYS = ("socket", "state-dir", "group", "allow-uids", "dataplane-ca")
# consent-*: the party's own consent material (docs/consent.md); outside [consent] mode = "demo"
# the run refuses to start without it, so a production node must be able to name it here.
NODE_KEYS = (
    "party",
    "role",
    "data",
    "node-dir",
    "egress-key",
    "peer-keys",
    "scenario",
    "consent-tokens",
    "consent-issuers",
    "consent-revocations",
    "consent-store",
    "consent",
)


class NodeConfigError(ValueError):
    """The node configuration file is missing a key, names an unknown party, or a bad path."""


@dataclass
class NodeServiceConfig:
    path: Path
    node_config: dict[str, Any]  # what the handlers see as Context.node_config
    socket: Path
    state_dir: Path
    group: str | None = None
    allow_uids: set[int] = field(default_factory=set)
    dataplane_ca: Path | None = None

    @property
    def party(self) -> str:
        return str(self.node_config["party"])


def load_node_config(path: Path, *, socket: Path | None = None, state_dir: Path | None = None) -> NodeServiceConfig:
    """Read and check ``path``; ``socket``/``state_dir`` override the file's values."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NodeConfigError(f"{path}: no such node configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise NodeConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - set(NODE_KEYS) - set(SERVICE_KEYS)
    if unknown:
        raise NodeConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {list(NODE_KEYS + SERVICE_KEYS)}")
    for key in ("party", "scenario", "node-dir"):
        if not doc.get(key):
            raise NodeConfigError(f"{path}: missing key {key!r}")
    from fedcredit import config

    scenario = config.load(str(doc["scenario"]))
    names = [p.name for p in scenario.parties]
    if doc["party"] not in names:
        raise NodeConfigError(f"{path}: party {doc['party']!r} is not in scenario {doc['scenario']} (has {names})")
    spec = scenario.party(str(doc["party"]))
    if "role" in doc and doc["role"] != spec.role:
        raise NodeConfigError(f"{path}: role {doc['role']!r}, but the scenario gives {spec.name!r} role {spec.role!r}")
    node_dir = Path(str(doc["node-dir"]))
    sock = Path(socket or doc.get("socket") or node_dir / "service" / "node.sock")
    if len(str(sock)) > SOCKET_PATH_MAX:
        raise NodeConfigError(
            f"{path}: socket path {sock} is {len(str(sock))} characters; Unix sockets allow {SOCKET_PATH_MAX}"
        )
    uids = doc.get("allow-uids", [])
    if not isinstance(uids, list) or not all(isinstance(u, int) for u in uids):
        raise NodeConfigError(f"{path}: 'allow-uids' must be a list of integers")
    return NodeServiceConfig(
        path=path,
        node_config={k: doc[k] for k in NODE_KEYS if k in doc},
        socket=sock,
        state_dir=Path(state_dir or doc.get("state-dir") or node_dir / "service" / "state"),
        group=doc.get("group"),
        allow_uids=set(uids),
        dataplane_ca=_ca_path(path, doc.get("dataplane-ca")),
    )


def _ca_path(path: Path, value: object) -> Path | None:
    """The data-plane CA certificate named in the config, checked to exist (None if not named)."""
    if not value:
        return None
    ca = Path(str(value))
    if not ca.is_file():
        raise NodeConfigError(f"{path}: dataplane-ca {ca} is not a file")
    return ca
