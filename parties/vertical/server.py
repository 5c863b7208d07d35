"""Coordinator orchestration of a vertical (hetero) run: the centre's platform runs this.

Phases, each a protocol relayed by :class:`parties.common.relay.Relay`:

1. ``hello``  — nodes introduce themselves (party, role, egress public key, table sizes).
2. ``align``  — consent-filtered ECDH-PSI; both sides keep the intersection in a common order.
3. ``split``  — the bank (which owns the labels) tells the centre which aligned rows are test and
                validation rows; each party fits its local preprocessing on its training rows.
4. ``train``  — two-party Paillier logistic regression or SecureBoost.
5. ``score``  — joint scoring of the held-out rows; the bank computes AUC/KS/Gini.
6. ``release``— each party saves its own model part and reports its SHA-256.

The coordinator never holds a decryption key, and what it relays is opaque ciphertext or blinded
points; its ledger records sizes and hashes of everything that crossed a boundary.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from flwr.serverapp import Grid

from fedcredit.config import Scenario
from parties.common import transport
from parties.common.recorder import Recorder
from parties.common.relay import Relay, RunFailed, wait_for_nodes

log = logging.getLogger(__name__)

TRAIN_PHASE = {"vertical-lr": "hetero_lr", "secureboost": "secureboost"}


def introduce(grid: Grid, recorder: Recorder, scenario: Scenario, timeout: float) -> tuple[Relay, dict]:
    """Map Flower node ids to scenario parties and write the ledger's run_start record."""
    node_ids = wait_for_nodes(grid, len(scenario.parties), timeout)
    hello = {"run_id": recorder.run_id, "scenario_hash": scenario.config_hash}
    from flwr.app import Message

    msgs = [
        Message(
            transport.request(phase="hello", step="hello", params=hello),
            dst_node_id=nid,
            message_type=transport.HELLO,
            group_id="hello",
        )
        for nid in node_ids
    ]
    replies = list(grid.send_and_receive(msgs, timeout=timeout))
    nodes: dict[str, int] = {}
    parties: dict[str, dict] = {}
    for rep in replies:
        nid = rep.metadata.src_node_id
        if rep.has_error():
            raise RunFailed(f"node-{nid}", "hello", rep.error.reason or "error")
        _, _, summary, _ = transport.read_reply(rep.content)
        name = summary["party"]
        if name in nodes:
            raise RunFailed(name, "hello", f"two nodes claim to be {name!r}")
        nodes[name] = nid
        parties[name] = summary
    relay = Relay(grid, nodes, recorder, timeout=timeout)
    recorder.run_start(
        {
            name: {"role": s["role"], "egress_pubkey": s["egress_pubkey"], "rows": s["rows"], "features": s["features"]}
            for name, s in parties.items()
        }
    )
    # the hello answers crossed a boundary too: record them like any step
    import hashlib

    recorder.step(
        "hello",
        0,
        [
            {
                "sender": name,
                "recipient": "coordinator",
                "kind": "Summary",
                "size": len(b),
                "sha256": hashlib.sha256(b).hexdigest(),
            }
            for name, b in ((n, transport.canonical_json(parties[n])) for n in parties)
        ],
    )
    for name, s in parties.items():
        if "error" in s:
            raise RunFailed(name, "hello", f"cannot load its data: {s['error']}")
        expected_role = scenario.party(name).role
        if s["role"] != expected_role:
            raise RunFailed(name, "hello", f"reports role {s['role']!r}, scenario says {expected_role!r}")
    missing = [p.name for p in scenario.parties if p.name not in nodes]
    if missing:
        raise RunFailed(missing[0], "hello", "party did not answer")
    return relay, parties


def run_vertical(grid: Grid, scenario: Scenario, recorder: Recorder, out_dir: Path, *, timeout: float = 900.0) -> dict:
    t0 = time.monotonic()
    relay, parties = introduce(grid, recorder, scenario, timeout)
    banks = scenario.parties_with_role("bank")
    centres = scenario.parties_with_role("credit_centre")
    if len(banks) != 1 or len(centres) != 1:
        raise RunFailed(
            "coordinator",
            "setup",
            "vertical mode needs exactly one bank and one credit centre "
            f"(scenario has {len(banks)} and {len(centres)})",
        )
    bank, centre = banks[0].name, centres[0].name
    pair = {bank: {"peer": centre}, centre: {"peer": bank}}
    t_phase = time.monotonic()

    align = relay.run_phase("align", pair)
    n_common = int(align[bank]["intersection"])
    recorder.event(
        "psi",
        {
            "bank": {k: v for k, v in align[bank].items() if k != "metrics"},
            "credit_centre": {k: v for k, v in align[centre].items() if k != "metrics"},
            "seconds": round(time.monotonic() - t_phase, 3),
        },
    )
    consent = align[bank].get("consent")
    if consent is not None:
        recorder.event("consent_check", {"bank": bank, "purpose": scenario.purpose, **consent})
    if n_common == 0:
        raise RunFailed(bank, "align", "the intersection with the credit centre is empty: nothing to train on")
    if int(align[centre]["intersection"]) != n_common:
        raise RunFailed(centre, "align", "parties disagree on the intersection size")

    split = relay.run_phase("split", pair)
    train_phase = TRAIN_PHASE[scenario.mode]
    t_train = time.monotonic()
    trained = relay.run_phase(train_phase, pair)
    train_seconds = time.monotonic() - t_train
    scored = relay.run_phase("score", pair)
    released = relay.run_phase("release", pair)
    recorder.event(
        "model_release", {p: {"sha256": s["model_sha256"], "path": s["model_path"]} for p, s in released.items()}
    )
    metrics = {
        **scored[bank]["metrics"],
        "rows_intersection": n_common,
        "rows_train": split[bank]["train"],
        "rows_test": split[bank]["test"],
        "rows_validation": split[bank]["validation"],
        "epochs": trained[bank].get("epochs"),
        "trees": trained[bank].get("trees"),
        "history": trained[bank].get("history", []),
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.monotonic() - t0, 2),
        "flower_round_trips": relay.steps,
        "psi": align[bank],
        "feature_importance": {
            p: s.get("feature_importance") for p, s in trained.items() if s.get("feature_importance") is not None
        },
    }
    (out_dir / "models.json").write_text(
        json.dumps({p: {"sha256": s["model_sha256"], "path": s["model_path"]} for p, s in released.items()}, indent=2)
    )
    return metrics
