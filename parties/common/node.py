"""Node-side runtime: who this node is, its data, its persisted protocol state, its egress log.

Everything a node keeps between Flower messages lives in ``context.state`` (node-local; in
deployment the SuperNode holds it, in simulation Flower keeps it per virtual node). Data is
re-read from the node's own storage on each message and cached per process, because Flower may
run consecutive messages of one node in different processes.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context

from fedcredit.config import PartySpec, Scenario
from fedcredit.data.loaders import PartyData, load_party_data
from fedcredit.data.readers import ReadOptions
from parties.common.roles import resolve_party
from protocols.common.party import Envelope

log = logging.getLogger(__name__)
STATE = "fedcredit"


@functools.lru_cache(maxsize=8)
def _cached_data(source: str, role: str, party: str, seed: int, read: ReadOptions) -> PartyData:
    return load_party_data(source, role, party=party, part="all", seed=seed, scaled=False, opts=read)


class NodeRuntime:
    def __init__(self, context: Context, scenario: Scenario, out_dir: Path | None):
        self.context = context
        self.scenario = scenario
        self.spec: PartySpec = resolve_party(context, scenario)
        self.name, self.role = self.spec.name, self.spec.role
        cfg = context.node_config
        if "node-dir" in cfg:
            self.dir = Path(str(cfg["node-dir"]))
        elif out_dir is not None:
            self.dir = Path(out_dir) / "nodes" / self.name
        else:
            raise RuntimeError(f"node {self.name}: no 'node-dir' in node_config and no run directory")
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- persisted state (node-local) ---------------------------------------------------
    def _record(self) -> ConfigRecord:
        records = self.context.state.config_records
        if STATE not in records:
            records[STATE] = ConfigRecord()
        return records[STATE]

    def get(self, key: str, default: object = None) -> object:
        rec = self._record()
        return rec[key] if key in rec else default

    def get_bytes(self, key: str) -> bytes | None:
        """A bytes value this node stored (None if it stored nothing under ``key``)."""
        value = self.get(key)
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"node {self.name}: state {key!r} holds {type(value).__name__}, not bytes")
        return value

    def put(self, key: str, value: str | bytes | int | float | bool) -> None:
        self._record()[key] = value

    # -- data ---------------------------------------------------------------------------
    def data(self) -> PartyData:
        source = self.scenario.resolve(self.spec.data)
        # the party table's id_column/label_column/encoding/... (issue 17): how to read its own file
        read = ReadOptions.from_mapping(self.spec.options, where=f"[parties.{self.name}]")
        return _cached_data(source, self.role, self.name, self.scenario.seed, read)

    # -- identity and egress log ------------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        cfg = self.context.node_config
        if "egress-key" in cfg:  # deployment: operator-provisioned key (fedcredit keys init)
            from fedcredit.ledger import load_private_key

            return load_private_key(str(cfg["egress-key"]))
        pem = self.get_bytes("egress_key_pem")
        if pem is None:  # simulation: the node makes its own key on first contact
            key = Ed25519PrivateKey.generate()
            self.put(
                "egress_key_pem",
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            return key
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise TypeError(f"node {self.name}: the stored egress key is not an Ed25519 key")
        return loaded

    @property
    def egress_path(self) -> Path:
        return self.dir / "egress.sqlite"

    def log_egress(self, step: str, outbox: list[Envelope], summary_bytes: bytes) -> None:
        """Sign and record every payload this node is about to send (never the payload itself)."""
        from fedcredit.ledger import EgressLog

        run_id = str(self.get("run_id"))
        elog = EgressLog.create(self.egress_path, self.signing_key(), run_id=run_id, node=self.name)
        try:
            for env in outbox:
                elog.record_sent(kind=env.kind, recipient=env.recipient, step=step, payload=env.payload)
            elog.record_sent(kind="Summary", recipient="coordinator", step=step, payload=summary_bytes)
        finally:
            elog.close()
