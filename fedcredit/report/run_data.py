"""What a run directory holds, read once, and who may see which part of it.

A report is written either for the *harness* (``party=None``: the simulation or deployment
operator's view of the whole run directory, as the centralised reference already pools data) or
for one *party*: then only what that party holds or was published to it is loaded -- the
coordinator's metrics and ledger (every participant may audit them) and that party's own node
directory. The centre's report therefore has no test scores (it holds no labels), and no party's
report shows another party's model. The ``coordinator`` view has no node directory at all: only
what the parties published to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.ledger import Record, read_records

COORDINATOR = "coordinator"  # its view: only what the parties published (metrics, ledger), no node directory


class ReportError(RuntimeError):
    """The run directory cannot be reported on; the message names the file and the problem."""


@dataclass
class RunData:
    run_dir: Path
    viewer: str | None  # None: the harness (whole run directory); else a party name
    status: dict[str, Any]
    metrics: dict[str, Any]
    records: list[Record]
    scenario_text: str | None
    test_scores: tuple[np.ndarray, np.ndarray] | None = None  # (y, score) held by the label holder
    reference_scores: dict[str, np.ndarray] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # party -> its own model.json
    parties: dict[str, dict[str, Any]] = field(default_factory=dict)  # from the ledger's run_start

    @property
    def mode(self) -> str:
        return str(self.status.get("mode") or self.metrics.get("mode") or self.run_start.get("mode") or "?")

    @property
    def run_start(self) -> dict[str, Any]:
        return next((r.payload for r in self.records if r.kind == "run_start"), {})

    def may_see(self, party: str) -> bool:
        """Whether this report may show ``party``'s private outputs (its model, its scores)."""
        return self.viewer is None or self.viewer == party


def _json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return value


def load_run(run_dir: Path | str, party: str | None = None) -> RunData:
    """Read ``run_dir`` for the harness (``party=None``) or for ``party``'s own report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a run directory")
    ledger = run_dir / "ledger.sqlite"
    if not ledger.exists():
        raise ReportError(f"{run_dir}: no ledger.sqlite (not a fedcredit run directory, or the run never started)")
    try:
        records = read_records(ledger)
    except Exception as exc:  # noqa: BLE001 - any unreadable ledger is reported with its file, not a traceback
        raise ReportError(f"{ledger}: cannot read the ledger: {exc}") from None
    scen = run_dir / "scenario.toml"
    data = RunData(
        run_dir=run_dir,
        viewer=party,
        status=_json(run_dir / "status.json"),
        metrics=_json(run_dir / "metrics.json"),
        records=records,
        scenario_text=scen.read_text() if scen.exists() else None,
    )
    if "verification" not in data.status:  # `deploy local` keeps its verdict in deploy.json
        deploy = _json(run_dir / "deploy.json")
        if isinstance(deploy.get("verification"), dict):
            data.status["verification"] = deploy["verification"]
    data.parties = dict(data.run_start.get("parties", {}))
    if party is not None and party != COORDINATOR and party not in data.parties:
        raise ReportError(
            f"{run_dir}: the run has no party {party!r} (parties: {sorted(data.parties)}, or {COORDINATOR!r})"
        )
    for name, info in data.parties.items():
        if not data.may_see(name):
            continue
        node = run_dir / "nodes" / name
        model = _json(node / "model.json")
        if model:
            data.models[name] = model
        scores = node / "test_scores.npz"
        if info.get("role") == "bank" and scores.exists():
            with np.load(scores) as z:
                data.test_scores = (np.asarray(z["y"]), np.asarray(z["score"]))
    ref = run_dir / "reference_scores.npz"
    if party is None and ref.exists():  # pooled data: the harness's yardstick, never a party's
        with np.load(ref) as z:
            data.reference_scores = {k: np.asarray(z[k]) for k in z.files}
    return data
