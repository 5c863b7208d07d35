"""The researchers' sweep script: builds valid scenarios, runs them, prints a table, plots."""

from __future__ import annotations

import json

import pytest

from simulations import horizontal_sweep as sweep


def test_sweep_builds_one_scenario_per_configuration():
    args = sweep.argparse.Namespace(
        banks=[3, 50],
        skew=[0.0, 0.5],
        modes=["plain", "secagg+", "ckks"],
        rounds=2,
        model="lr",
        mu=0.01,
        lr=0.05,
        local_epochs=1,
        max_rows=0,
        seed=1,
    )
    scs = sweep.build(args)
    assert len(scs) == 12 and len({s.config_hash for s in scs}) == 12
    big = [s for s in scs if len(s.parties) == 50]
    assert len(big) == 6 and all(s.section("horizontal")["release_each_round"] for s in big)


def test_sweep_runs_prints_and_plots(tmp_path, capsys):
    rows = sweep.main(
        [
            "--banks",
            "3",
            "--skew",
            "0.5",
            "--modes",
            "plain",
            "ckks",
            "--rounds",
            "2",
            "--max-rows",
            "800",
            "--engine",
            "inprocess",
            "--out",
            str(tmp_path),
        ]
    )
    assert len(rows) == 2 and not any(r["error"] for r in rows)
    assert all(len([h for h in r["history"] if "auc" in h]) == 2 for r in rows)  # CKKS released per round
    out = capsys.readouterr().out
    assert "banks  skew" in out and "ckks" in out and "plain" in out
    assert (tmp_path / "auc_vs_rounds.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "results.json").read_text())) == 2


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sweep_fifty_banks_on_ray(tmp_path):
    rows = sweep.main(["--banks", "50", "--skew", "0.5", "--rounds", "3", "--out", str(tmp_path)])
    assert len(rows) == 3 and not any(r["error"] for r in rows)
    aucs = [r["auc"] for r in rows]
    assert max(aucs) - min(aucs) < 0.005
