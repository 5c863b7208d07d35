"""Demo tokens delivered to the centre ahead of runs (`make demo`, `fedcredit consent demo`).

What must hold: the store the delivery fills is the one the centre's node opens and holds exactly
the tokens the bank will present (a run after delivery verifies no signature: ``verified_now``
counts the forged tokens only), and the run's verdicts are those of a run that verified everything
itself. Outside demo mode nothing is delivered."""

from __future__ import annotations

import pytest
from conftest import write_vertical_subset
from typer.testing import CliRunner

from fedcredit import config
from fedcredit.cli.main import app
from fedcredit.ledger import read_records
from parties.in_process import run_scenario_in_process
from parties.vertical.consent import ConsentSetupError, deliver_demo_tokens

N_ROWS = 1000


def _scenario(d, demo_dir, mode: str = "demo") -> config.Scenario:
    return config.loads(f"""
[run]
name = "delivery"
mode = "vertical-lr"
[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
[consent]
mode = "{mode}"
demo_dir = "{demo_dir}"
demo_revoked = 0.02
demo_expired = 0.02
demo_out_of_scope = 0.02
demo_forged = 0.02
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
""")


def _consent(run_dir) -> dict:
    return next(r.payload for r in read_records(run_dir / "ledger.sqlite") if r.kind == "consent_check")


def test_a_run_after_delivery_verifies_nothing_and_decides_as_a_cold_run(tmp_path):
    write_vertical_subset(tmp_path, N_ROWS)
    warm = _scenario(tmp_path, tmp_path / "delivered")
    (done,) = deliver_demo_tokens(warm)
    assert (done.bank, done.centre, done.tokens) == ("bank", "credit_centre", N_ROWS)
    forged = done.refused.get("forged", 0)
    assert forged > 0 and done.added == N_ROWS - forged, done
    assert deliver_demo_tokens(warm)[0].added == 0  # a second delivery verifies nothing new

    assert run_scenario_in_process(warm, tmp_path / "warm")["status"] == "completed"
    cold = _scenario(tmp_path, tmp_path / "cold")  # same tokens, empty store
    assert run_scenario_in_process(cold, tmp_path / "cold-run")["status"] == "completed"
    w, c = _consent(tmp_path / "warm"), _consent(tmp_path / "cold-run")
    assert c["verified_now"] == N_ROWS  # the cold run verified every token itself
    # after delivery nothing is verified in the run: good tokens are filed, forged ones refused
    # from the store's cache of failures (by token hash)
    assert w["verified_now"] == 0, w
    assert (w["accepted"], w["refused"]) == (c["accepted"], c["refused"])
    assert set(w["refused"]) >= {"revoked", "expired", "out_of_scope", "forged"}


def test_delivery_refuses_outside_demo_mode_and_the_cli_reports_it(tmp_path):
    write_vertical_subset(tmp_path, 50)
    with pytest.raises(ConsentSetupError, match="demo"):
        deliver_demo_tokens(_scenario(tmp_path, tmp_path / "d", mode="enforce"))
    path = tmp_path / "enforce.toml"
    path.write_text(_scenario(tmp_path, tmp_path / "d", mode="enforce").source_text)
    res = CliRunner().invoke(app, ["consent", "demo", str(path)])
    assert res.exit_code != 0 and "demo" in res.output
    assert not (tmp_path / "d").exists()  # nothing issued, nothing stored
