"""Streamed vs relayed training, side by side: the same scenario through ``fedcredit simulate`` with
hetero-LR's epochs streamed (one coordinator step per epoch, parties.common.exchange) and with
``[run] stream = false`` (one coordinator step per exchange), alternating.

    .venv/bin/python simulations/bench/stream.py [--scenario configs/vertical-lr.toml] [--repeat 2]
                                                 [--out runs/bench-stream]

Per run: wall seconds of the command, the coordinator's run and training seconds, its steps
(``flower_round_trips``: every coordinator step of the run; in simulation each is one Flower round
trip) and the exchanges streamed inside them, test AUC and the model digests. The last line is
JSON: medians per mode, ``train_ratio`` and ``steps_ratio`` (relayed / streamed), and whether both
modes trained the same model. Record ``uptime``'s load average with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _relayed_copy(scenario: Path, where: Path) -> Path:
    """The scenario with ``[run] stream = false``, its relative data paths made absolute."""
    text = scenario.read_text()
    assert "\n[run]\n" in "\n" + text, f"{scenario} has no [run] section"
    lines, out, section = text.splitlines(), [], ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        if section.startswith("[parties.") and stripped.startswith("data") and "=" in stripped:
            value = stripped.split("=", 1)[1].strip().strip('"')
            if "/" in value and not Path(value).is_absolute():
                line = f'data = "{(scenario.parent / value).resolve()}"'
        out.append(line)
        if stripped == "[run]":
            out.append("stream = false")
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{scenario.stem}-relayed.toml"
    path.write_text("\n".join(out) + "\n")
    return path


def _run(scenario: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "fedcredit"), "simulate", str(scenario), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{scenario} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    models = json.loads((out / "models.json").read_text())
    return {
        "wall_seconds": round(wall, 2),
        "run_seconds": m["seconds"],
        "train_seconds": m["train_seconds"],
        "coordinator_steps": m["flower_round_trips"],
        "streamed_steps": m.get("streamed_steps", 0),
        "exchanges": m.get("streamed_exchanges", 0),
        "auc": m["auc"],
        "models": {p: v["sha256"] for p, v in models.items()},
        "load_avg": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=ROOT / "configs" / "vertical-lr.toml")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-stream")
    args = ap.parse_args(argv)
    relayed = _relayed_copy(args.scenario.resolve(), args.out)
    runs: dict[str, list[dict]] = {"streamed": [], "relayed": []}
    for i in range(args.repeat):
        for mode, path in (("streamed", args.scenario.resolve()), ("relayed", relayed)):
            r = _run(path, args.out / f"{mode}-{i}")
            runs[mode].append(r)
            print(json.dumps({"mode": mode, "repeat": i, **r}), flush=True)
    med = {
        mode: {
            k: round(statistics.median(r[k] for r in rs), 2) for k in ("wall_seconds", "run_seconds", "train_seconds")
        }
        | {"coordinator_steps": rs[0]["coordinator_steps"], "exchanges": rs[0]["exchanges"], "auc": rs[0]["auc"]}
        for mode, rs in runs.items()
    }
    same = all(r["models"] == runs["streamed"][0]["models"] for rs in runs.values() for r in rs)
    summary = {
        "summary": "stream",
        "scenario": str(args.scenario),
        "streamed": med["streamed"],
        "relayed": med["relayed"],
        "train_ratio": round(med["relayed"]["train_seconds"] / med["streamed"]["train_seconds"], 2),
        "steps_ratio": round(med["relayed"]["coordinator_steps"] / med["streamed"]["coordinator_steps"], 2),
        "same_model": same,
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
