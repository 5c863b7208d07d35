"""The Python API for researchers: build scenarios in code, run them, read the results.

    import fedcredit
    base = fedcredit.Scenario.from_file("configs/vertical-lr.toml")
    for epochs in (1, 3, 5):
        r = fedcredit.simulate(base.with_settings({"lr.epochs": epochs}), out=f"runs/sweep/e{epochs}")
        print(epochs, r.auc, r.report_path)

A :class:`Scenario` is an immutable, validated copy of a scenario's TOML tables; ``with_settings``
returns a changed copy (checked again, so a typo fails at once with the key named). :func:`simulate`
runs it with the production coordinator and ClientApp -- in this process by default (no Ray, no
network: fast enough for sweeps in a notebook), or in Flower's simulation engine with
``engine="flower"`` exactly as ``fedcredit simulate`` does -- then adds the centralised
reference, verifies the ledger, writes ``report.html`` and returns a :class:`RunResult`.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from fedcredit import config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    """A scenario's TOML tables, validated; vary it with :meth:`with_settings`.

    ``base`` is the directory relative data paths are resolved against (a scenario file's own
    location, as the CLI does), so a varied copy of ``configs/x.toml`` still finds its data.
    """

    tables: Mapping[str, Any]
    base: Path | None = None
    _checked: config.Scenario = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", copy.deepcopy(dict(self.tables)))
        object.__setattr__(self, "_checked", config.loads(self.to_toml(), path=self._path()))

    def _path(self) -> Path | None:
        return None if self.base is None else (self.base / "scenario.toml")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        p = Path(path)
        return cls.from_toml(config.load(p).source_text, base=p.resolve().parent)

    @classmethod
    def from_toml(cls, text: str, *, base: str | Path | None = None) -> Scenario:
        import tomllib

        try:
            tables = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise config.ConfigError(f"scenario: not valid TOML: {exc}") from None
        return cls(tables, Path(base) if base is not None else None)

    @classmethod
    def from_dict(cls, tables: Mapping[str, Any], *, base: str | Path | None = None) -> Scenario:
        return cls(tables, Path(base) if base is not None else None)

    @classmethod
    def coerce(cls, value: Any) -> Scenario:
        """A :class:`Scenario` from a Scenario, a loaded ``config.Scenario``, a path, TOML text or a dict."""
        if isinstance(value, Scenario):
            return value
        if isinstance(value, config.Scenario):
            return cls.from_toml(value.source_text, base=value.path.parent if value.path else None)
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, Path):
            return cls.from_file(value)
        if isinstance(value, str):
            if "\n" not in value and value.strip().endswith(".toml"):
                return cls.from_file(value)
            return cls.from_toml(value)
        raise TypeError(f"a scenario is a Scenario, a path, TOML text or a dict, not {type(value).__name__}")

    # -- variation -----------------------------------------------------------------------
    def with_settings(self, changes: Mapping[str, Any]) -> Scenario:
        """A copy with dotted keys set: ``{"lr.epochs": 3, "run.name": "e3", "parties.bank.data": "b.csv"}``.

        A value of ``None`` removes the key (back to its default). The copy is validated, so an
        unknown key or a value out of range raises :class:`fedcredit.config.ConfigError`.
        """
        tables = copy.deepcopy(dict(self.tables))
        for dotted, value in changes.items():
            *path, key = dotted.split(".")
            if not path:
                raise config.ConfigError(f"{dotted!r}: give section.key, e.g. 'lr.epochs'")
            node = tables
            for part in path:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise config.ConfigError(f"{dotted!r}: {part!r} is a value, not a table")
            if value is None:
                node.pop(key, None)
            else:
                node[key] = value
        return Scenario(tables, self.base)

    def get(self, dotted: str, default: Any = None) -> Any:
        """The value at ``section.key`` as written in the tables (``default`` if absent)."""
        node: Any = self.tables
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    # -- views ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._checked.name

    @property
    def mode(self) -> str:
        return self._checked.mode

    def to_toml(self) -> str:
        return tomli_w.dumps(dict(self.tables))

    def load(self) -> config.Scenario:
        """The checked scenario the framework runs (a fresh copy each call)."""
        return config.loads(self.to_toml(), path=self._path())


@dataclass
class RunResult:
    """What a run left behind, read from its directory (so it can be reloaded with :meth:`open`)."""

    out: Path
    status: dict[str, Any]
    metrics: dict[str, Any]

    @classmethod
    def open(cls, out: str | Path) -> RunResult:
        out = Path(out)

        def read(name: str) -> dict[str, Any]:
            p = out / name
            return json.loads(p.read_text()) if p.exists() else {}

        return cls(out, read("status.json"), read("metrics.json"))

    @property
    def completed(self) -> bool:
        return self.status.get("status") == "completed"

    @property
    def verified(self) -> bool:
        return bool((self.status.get("verification") or {}).get("ok"))

    @property
    def auc(self) -> float | None:
        return self.metrics.get("auc")

    @property
    def ks(self) -> float | None:
        return self.metrics.get("ks")

    @property
    def gini(self) -> float | None:
        return self.metrics.get("gini")

    @property
    def centralised(self) -> dict[str, dict[str, float]]:
        return dict(self.metrics.get("centralised", {}))

    @property
    def ledger_path(self) -> Path:
        return self.out / "ledger.sqlite"

    @property
    def report_path(self) -> Path | None:
        p = self.out / "report.html"
        return p if p.exists() else None

    @property
    def log_path(self) -> Path:
        return self.out / "run.log"

    def model_parts(self) -> dict[str, dict[str, Any]]:
        """Each party's released model part (``nodes/<party>/model.json``): weights or trees, its preprocessing."""
        return {p.parent.name: json.loads(p.read_text()) for p in sorted((self.out / "nodes").glob("*/model.json"))}

    def row(self) -> dict[str, Any]:
        """One flat row for a sweep table: scenario, headline metrics, timings, the ledger verdict."""
        r: dict[str, Any] = {
            "scenario": self.status.get("scenario"),
            "status": self.status.get("status"),
            "auc": self.auc,
            "ks": self.ks,
            "gini": self.gini,
        }
        for k in ("epochs", "trees", "rounds", "seconds", "train_seconds", "flower_round_trips"):
            if self.metrics.get(k) is not None:
                r[k] = self.metrics[k]
        r["verified"] = self.verified
        return r


def simulate(
    scenario: Any,
    out: str | Path | None = None,
    *,
    engine: Literal["in-process", "flower"] = "in-process",
    reference: bool = True,
) -> RunResult:
    """Run ``scenario`` (a :class:`Scenario`, path, TOML text or dict) into ``out``; return its result.

    ``out`` must not hold an earlier run (a fresh temp directory if None). ``engine="in-process"``
    runs the real coordinator and ClientApp in this process (no Ray); ``"flower"`` uses Flower's
    simulation engine like ``fedcredit simulate``. ``reference=False`` skips the centralised
    reference (it pools the data and refits: seconds on default_credit). INFO lines go to
    ``out/run.log``. A failed run is returned (``result.completed`` is False, the status names the
    party and step), not raised: a sweep keeps its other points.
    """
    from fedcredit.cli import simulate_cmd
    from fedcredit.runtime import run_log

    sc = Scenario.coerce(scenario)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"fedcredit-{sc.name}-"))
    if (out / "ledger.sqlite").exists():
        raise FileExistsError(f"{out} already holds a run (ledger.sqlite); choose another out")
    out.mkdir(parents=True, exist_ok=True)
    checked = sc.load()
    with run_log(out):
        if engine == "flower":
            simulate_cmd.run_simulation_scenario(checked, out, reference=reference)
        elif engine == "in-process":
            from parties.in_process import run_scenario_in_process

            simulate_cmd.save_scenario(checked, out)
            simulate_cmd.ensure_synthetic_data(checked)
            status = run_scenario_in_process(checked, out)
            simulate_cmd.finish_run(checked, out, status, reference=reference)
        else:
            raise ValueError(f"engine must be 'in-process' or 'flower', not {engine!r}")
    return RunResult.open(out)
