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
* ``same_model`` -- whether both runs reached the same AUC (same seed: they must);
* ``flower_round_trips`` / ``dataplane_round_trips`` -- how the deployed relay steps travelled:
  Flower (SuperLink push, SuperNode poll, ClientApp) or the coordinator's streaming data plane
  (:mod:`parties.common.dataplane`), and ``transport_by_phase`` (round trips and mean seconds per
  round trip of each phase and transport);
* with ``--compare-flower``: the same deployment again with ``--no-dataplane`` (every step through
  Flower), its figures under ``flower_only``; ``--no-dataplane`` measures only that one.

``--firms N`` runs the one-epoch synthetic variant instead (issue #16: deployed epoch time at most
1.5x the simulated one): ``fedcredit data synth`` tables of N firms and one bank, hetero-LR one
epoch, 2048-bit keys, batch 4096; reported as above plus ``rows`` (the aligned rows trained on:
about 40 % of the firms with the generator's default profile, so ``--firms 750000`` for ~300,000
rows), ``sim_/deploy_train_seconds`` (the training phase alone) and their ``train_ratio``.

The last line printed is JSON. Record ``uptime``'s load average with the figures.

    .venv/bin/python simulations/bench/deploy.py [--scenario configs/vertical-lr.toml] [--out runs/bench-deploy]
                                                 [--compare-flower | --no-dataplane] [--firms 750000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for fedcredit/simulations

from simulations.bench._progress import BenchProgress, add_progress_flag  # noqa: E402


class _LedgerFollower:
    """Feeds a sub-bar from a child run's ledger (read-only, as ``fedcredit simulate`` shows its own
    progress): phase/step and epoch, tree or round i of n."""

    def __init__(self, run_dir: Path, plan: tuple[str, int | None], tick: Callable[..., None]) -> None:
        from fedcredit.progress import ProgressState

        self.ledger = run_dir / "ledger.sqlite"
        self.unit, self.total = plan
        self.state, self.seq, self.tick = ProgressState(), -1, tick

    def __call__(self) -> None:
        from fedcredit.progress import read_new

        for seq, kind, payload in read_new(self.ledger, self.seq):
            self.seq = seq
            self.state.absorb(kind, payload, self.unit)
        where = self.state.step or self.state.phase
        self.tick(self.state.done, label=f"{where} · {self.unit} {self.state.done}/{self.total or '?'}")


def _run(args: list[str], log: Path, env: dict[str, str], follow: Callable[[], None] | None = None) -> float:
    """Run a command, output to ``log``; ``follow()`` every half second meanwhile (progress)."""
    t = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        try:
            while True:
                try:
                    code = proc.wait(timeout=None if follow is None else 0.5)
                    break
                except subprocess.TimeoutExpired:
                    follow()  # type: ignore[misc]
        except BaseException:
            proc.kill()  # as subprocess.run does: never leave the run behind
            proc.wait()
            raise
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"`{' '.join(args)}` exited with {code}; end of {log}:\n{tail}")
    return time.monotonic() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="configs/vertical-lr.toml")
    p.add_argument("--out", default="runs/bench-deploy")
    p.add_argument("--skip-sim", action="store_true", help="only deploy (sim figures from an earlier --out)")
    p.add_argument("--no-dataplane", action="store_true", help="deploy with every relay step through Flower")
    p.add_argument("--compare-flower", action="store_true", help="also deploy with --no-dataplane, side by side")
    p.add_argument("--firms", type=int, default=0, help="one-epoch synthetic scenario of this many firms instead")
    add_progress_flag(p)
    args = p.parse_args()
    with BenchProgress("deploy", phases=3, no_progress=args.no_progress) as prog:
        _bench(args, prog)


ROWS_SCENARIO = """
[run]
name = "deploy-rows-{rows}"
mode = "vertical-lr"
purpose = "credit_risk_modelling"
seed = 7

[parties.bank_a]
role = "bank"
data = "synthetic:{data}"

[parties.credit_centre]
role = "credit_centre"
data = "synthetic:{data}"

[consent]
mode = "demo"

[evaluation]
validation_fraction = 0.0

[lr]
epochs = 1
batch_size = 4096
key_bits = 2048
early_stopping_patience = 0
"""


def _rows_scenario(fedcredit: str, out: Path, rows: int, env: dict[str, str]) -> str:
    """A one-epoch scenario on ``rows`` synthetic firms (tables generated once under ``out``)."""
    # firms, really: the aligned rows are the bank's customers the centre knows (metrics.json)
    data = out / f"sme-{rows}"
    if not (data / "README.md").exists():
        cmd = [fedcredit, "data", "synth", "--firms", str(rows), "--banks", "1", "--seed", "7", "--out", str(data)]
        _run(cmd, out / "synth.log", env)
    path = out / f"rows-{rows}.toml"
    path.write_text(ROWS_SCENARIO.format(rows=rows, data=data))
    return str(path)


def _deploy_figures(run_dir: Path, seconds: float) -> dict:
    """One deployment's wall time, round trips and transports (from its deploy.json/metrics.json)."""
    summary = json.loads((run_dir / "deploy.json").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    lat = summary.get("latency", {})
    transport = m.get("transport") or {}
    return {
        "deploy_seconds": round(seconds, 2),
        "deploy_run_seconds": m.get("seconds"),
        "deploy_train_seconds": m.get("train_seconds"),
        "deploy_startup_seconds": round(seconds - float(summary.get("timings", {}).get("run_s") or 0), 2),
        "round_trips": lat.get("ledger_round_trips"),
        "seconds_per_round_trip": lat.get("seconds_per_round_trip_median"),
        "flower_round_trips": transport.get("flower_round_trips", lat.get("ledger_round_trips")),
        "dataplane_round_trips": transport.get("dataplane_round_trips", 0),
        "transport_by_phase": transport.get("by_phase"),
        "auc": m.get("auc"),
    }


def _bench(args: argparse.Namespace, prog: BenchProgress) -> None:
    out = Path(args.out).resolve()
    fedcredit = str(Path(sys.executable).parent / "fedcredit")
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0")
    env.setdefault("FLWR_HOME", str(out / "flwr-home"))
    env.setdefault("RAY_TMPDIR", str(out / "ray"))
    out.mkdir(parents=True, exist_ok=True)
    if args.firms:
        args.scenario = _rows_scenario(fedcredit, out, args.firms, env)
    if not args.skip_sim:
        shutil.rmtree(out / "sim", ignore_errors=True)
    shutil.rmtree(out / "deploy", ignore_errors=True)
    shutil.rmtree(out / "deploy-flower", ignore_errors=True)

    result: dict = {"scenario": args.scenario}
    plan: tuple[str, int | None] = ("step", None)
    if prog.enabled:
        from fedcredit import config
        from fedcredit.progress import planned_units

        plan = planned_units(config.load(args.scenario))  # epochs, trees or rounds the run will go through
    prog.phase(f"simulate {args.scenario}")
    if not args.skip_sim:
        with prog.steps("starting", total=plan[1]) as tick:
            follow = _LedgerFollower(out / "sim", plan, tick) if prog.enabled else None
            sim_s = _run(
                [fedcredit, "simulate", args.scenario, "--out", str(out / "sim")], out / "sim.log", env, follow
            )
        (out / "sim_seconds.txt").write_text(f"{sim_s:.2f}")
    sim_s = float((out / "sim_seconds.txt").read_text())
    prog.phase(f"deploy local {args.scenario}")
    with prog.steps("starting", total=plan[1]) as tick:
        follow = _LedgerFollower(out / "deploy", plan, tick) if prog.enabled else None
        transport = ["--no-dataplane"] if args.no_dataplane else []
        dep_s = _run(
            [fedcredit, "deploy", "local", args.scenario, "--out", str(out / "deploy"), *transport],
            out / "deploy.log",
            env,
            follow,
        )
    flower_only: dict | None = None
    if args.compare_flower and not args.no_dataplane:
        prog.phase(f"deploy local --no-dataplane {args.scenario}")
        cmd = [fedcredit, "deploy", "local", args.scenario, "--out", str(out / "deploy-flower"), "--no-dataplane"]
        flower_only = _deploy_figures(out / "deploy-flower", _run(cmd, out / "deploy-flower.log", env))
    prog.phase("comparing the runs")
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
    figures = _deploy_figures(out / "deploy", dep_s)
    for key in ("flower_round_trips", "dataplane_round_trips", "transport_by_phase"):
        result[key] = figures[key]
    if args.firms:
        result.update(
            firms=args.firms, rows=m_dep.get("rows_intersection"), sim_train_seconds=m_sim.get("train_seconds")
        )
        result["deploy_train_seconds"] = figures["deploy_train_seconds"]
        if m_sim.get("train_seconds") and figures["deploy_train_seconds"]:
            result["train_ratio"] = round(float(figures["deploy_train_seconds"]) / float(m_sim["train_seconds"]), 2)
    if flower_only is not None:
        flower_only["ratio"] = round(flower_only["deploy_seconds"] / sim_s, 2)
        result["flower_only"] = flower_only
    print(json.dumps(result))


if __name__ == "__main__":
    main()
