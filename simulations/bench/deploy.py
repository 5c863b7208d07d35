"""Deployed vs simulated wall time of one scenario: ``fedcredit simulate`` and ``fedcredit deploy local``.

Runs both commands (as an operator would: separate processes, same scenario, same seed) one after
the other and reports:

* ``sim_seconds`` / ``deploy_seconds`` -- wall time of each command, start-up and tear-down
  included; ``ratio`` = deploy / sim;
* ``sim_run_seconds`` / ``deploy_run_seconds`` -- the coordinator's own run time (``metrics.json``
  ``seconds``: first protocol step to the last), i.e. without starting Ray or the daemons;
* ``round_trips`` -- coordinator -> nodes -> coordinator exchanges of the deployed run (ledger
  ``step`` records), ``seconds_per_round_trip`` their median spacing, and per phase
  (``round_trips_by_phase``, ``seconds_per_round_trip_by_phase``; also written to the deployed
  run's ``metrics.json`` by ``fedcredit deploy local``);
* ``same_model`` -- whether both runs reached the same AUC (same seed: they must).

The last line printed is JSON. Record ``uptime``'s load average with the figures.

    .venv/bin/python simulations/bench/deploy.py [--scenario configs/vertical-lr.toml] [--out runs/bench-deploy]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _run(args: list[str], log: Path, env: dict[str, str]) -> float:
    t = time.monotonic()
    with open(log, "wb") as fh:
        code = subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"`{' '.join(args)}` exited with {code}; end of {log}:\n{tail}")
    return time.monotonic() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="configs/vertical-lr.toml")
    p.add_argument("--out", default="runs/bench-deploy")
    p.add_argument("--skip-sim", action="store_true", help="only deploy (sim figures from an earlier --out)")
    args = p.parse_args()
    out = Path(args.out).resolve()
    fedcredit = str(Path(sys.executable).parent / "fedcredit")
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0")
    env.setdefault("FLWR_HOME", str(out / "flwr-home"))
    env.setdefault("RAY_TMPDIR", str(out / "ray"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_sim:
        shutil.rmtree(out / "sim", ignore_errors=True)
    shutil.rmtree(out / "deploy", ignore_errors=True)

    result: dict = {"scenario": args.scenario}
    if not args.skip_sim:
        sim_s = _run([fedcredit, "simulate", args.scenario, "--out", str(out / "sim")], out / "sim.log", env)
        (out / "sim_seconds.txt").write_text(f"{sim_s:.2f}")
    sim_s = float((out / "sim_seconds.txt").read_text())
    dep_s = _run([fedcredit, "deploy", "local", args.scenario, "--out", str(out / "deploy")], out / "deploy.log", env)
    m_sim = json.loads((out / "sim" / "metrics.json").read_text())
    m_dep = json.loads((out / "deploy" / "metrics.json").read_text())
    summary = json.loads((out / "deploy" / "deploy.json").read_text())
    lat = summary.get("latency", {})
    result.update(
        {
            "sim_run_seconds": m_sim.get("seconds"),
            "deploy_run_seconds": m_dep.get("seconds"),
            "deploy_startup_seconds": round(dep_s - float(summary.get("timings", {}).get("run_s") or 0), 2),
            "round_trips_by_phase": lat.get("round_trips_by_phase"),
            "seconds_per_round_trip_by_phase": lat.get("seconds_per_round_trip_by_phase"),
            "train_round_trips_per_epoch": lat.get("train_round_trips_per_epoch"),
            "same_model": abs(float(m_sim.get("auc", 0)) - float(m_dep.get("auc", 1))) < 1e-6,
            "auc": m_dep.get("auc"),
            "load_average": os.getloadavg(),
            "sim_seconds": round(sim_s, 2),
            "deploy_seconds": round(dep_s, 2),
            "ratio": round(dep_s / sim_s, 2),
            "round_trips": lat.get("ledger_round_trips"),
            "seconds_per_round_trip": lat.get("seconds_per_round_trip_median"),
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
