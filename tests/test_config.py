"""Scenario settings: every section declared once, checked at load, shown by ``fedcredit config show``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedcredit import config
from fedcredit.cli.main import app
from fedcredit.config.horizontal import HorizontalSettings, SecAggSettings
from fedcredit.config.sections import ConsentSettings, DataSettings, PsiSettings, RunSettings

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.toml"))
TWO = '[parties.bank]\nrole = "bank"\n[parties.credit_centre]\nrole = "credit_centre"\n'
BANKS3 = "".join(f'[parties.bank_{c}]\nrole = "bank"\n' for c in "abc")


def scenario_text(body: str = "", mode: str = "vertical-lr", parties: str = TWO) -> str:
    """A scenario plus ``body``: keys of ``[run]`` itself when ``body`` starts with ``[run]`` (TOML
    allows one ``[run]`` table), top-level keys when it starts with no table, else more tables."""
    run = f'[run]\nname = "t"\nmode = "{mode}"\nseed = 5\n'
    if body.startswith("[run]"):
        return run + body.split("\n", 1)[1] + "\n" + parties
    if not body.startswith("["):
        return f"{body}\n{run}{parties}"
    return run + parties + body


# -- one error type ------------------------------------------------------------------------
def test_one_config_error_base_for_framework_and_protocols():
    from protocols.common.settings import ConfigError
    from protocols.hetero_lr import HeteroLRConfigError
    from protocols.secureboost import SecureBoostConfigError

    assert config.ConfigError is ConfigError
    assert issubclass(HeteroLRConfigError, ConfigError) and issubclass(SecureBoostConfigError, ConfigError)


def test_spelled_out_constants_agree_with_their_sources():
    from fedcredit.config import sections
    from fedcredit.consent import PURPOSES
    from protocols.psi import DEFAULT_TRUNCATE, MIN_TRUNCATE, POINT_BYTES

    assert sections.PURPOSES == PURPOSES
    assert (sections.PSI_MIN_TRUNCATE, sections.PSI_POINT_BYTES, sections.PSI_DEFAULT_TRUNCATE) == (
        MIN_TRUNCATE,
        POINT_BYTES,
        DEFAULT_TRUNCATE,
    )


# -- load-time checks --------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_and_every_section_parses(path):
    sc = config.load(path)
    for name in config.SECTION_NAMES:
        assert isinstance(sc.settings(name), config.section_type(name))


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[run]\ntypo = 1", r"\[run\] unknown key.*'typo'"),
        ("[data]\nfirm = 10", r"\[data\] unknown key.*'firm'"),
        ("[evaluation]\nvalidation_fractoin = 0.2", r"\[evaluation\] unknown key.*'validation_fractoin'"),
        ("[psi]\ntrunc = 12", r"\[psi\] unknown key.*'trunc'"),
        ("[consent]\nregistery = 'c.csv'", r"\[consent\] unknown key.*'registery'"),
        ("[inference]\nmodeldir = 'runs/x'", r"\[inference\] unknown key.*'modeldir'"),
        ("[simulation]\nclient_cpu = 1", r"\[simulation\] unknown key.*'client_cpu'"),
        ("[ledger]\npath = 'x'", r"\[ledger\] unknown key.*'path'"),
        ("[deploy]\nhosts = 'x'", r"\[deploy\] unknown key.*'hosts'"),
        ("[horizontal]\nround = 3", r"\[horizontal\] unknown key.*'round'"),
        ("[horizontal.secagg]\nshares = 3", r"\[horizontal.secagg\] unknown key.*'shares'"),
        ("[lr]\nepoch = 3", "epoch"),
        ("[secureboost]\ntrees = 3", "trees"),
    ],
)
def test_a_typo_in_any_section_fails_at_load_naming_section_and_key(body, needle):
    with pytest.raises(config.ConfigError, match=needle):
        config.loads(scenario_text(body))


@pytest.mark.parametrize(
    "body, needle",
    [
        ('[run]\npurpose = "marketing"', r"\[run\] purpose = 'marketing': must be one of"),
        ("[run]\nstep_timeout = 0", r"\[run\] step_timeout = 0.0: must be > 0"),
        ("[psi]\ntruncate = 4", r"\[psi\] truncate = 4: must be >= 8"),
        ("[psi]\nworkers = true", r"\[psi\] workers = True: must be an integer"),
        ("[consent]\ndemo_revoked = 1.5", r"\[consent\] demo_revoked = 1.5: must be <= 1"),
        ("[consent]\ndemo_revoked = 0.6\ndemo_expired = 0.6", r"\[consent\] demo_expired"),
        ('[consent]\nat = "2025-02-30"', r"\[consent\] at = '2025-02-30': must be a date"),
        ("[inference]\nbatch_size = 0", r"\[inference\] batch_size = 0: must be >= 1"),
        ("[simulation]\nclient_cpus = 0", r"\[simulation\] client_cpus = 0.0: must be > 0"),
        ("[data]\nbanks = 27", r"\[data\] banks = 27: must be <= 26"),
        ("[evaluation]\nvalidation_fraction = 1.0", r"\[evaluation\] validation_fraction = 1.0: must be < 1"),
        ("psi = 3", r"\[psi\] must be a table"),
        ("[nonsense]\nx = 1", r"unknown section\(s\) \['nonsense'\]"),
    ],
)
def test_bad_values_fail_at_load_naming_the_key(body, needle):
    with pytest.raises(config.ConfigError, match=needle):
        config.loads(scenario_text(body))


def test_run_needs_name_and_mode_and_parties():
    with pytest.raises(config.ConfigError, match=r"\[run\] needs 'mode'"):
        config.loads('[run]\nname = "t"\n' + TWO)
    with pytest.raises(config.ConfigError, match=r"no \[parties.<name>\] tables"):
        config.loads('[run]\nname = "t"\nmode = "vertical-lr"\n')
    with pytest.raises(config.ConfigError, match=r"\[run\] mode = 'vertical': must be one of"):
        config.loads('[run]\nname = "t"\nmode = "vertical"\n' + TWO)


# -- the typed accessor ----------------------------------------------------------------------------
def test_settings_are_typed_cached_and_default_when_absent():
    sc = config.loads(scenario_text("[psi]\ntruncate = 16\n[consent]\nat = 2025-01-31\n"))
    psi = sc.settings(PsiSettings)
    assert psi is sc.settings("psi") and psi.truncate == 16 and psi.workers == 1
    assert sc.settings(ConsentSettings).at == "2025-01-31"  # a TOML date is accepted
    assert sc.settings(ConsentSettings).day.isoformat() == "2025-01-31"
    run = sc.settings(RunSettings)
    assert (run.name, run.mode, run.seed, run.step_timeout) == ("t", "vertical-lr", 5, 900.0)
    assert sc.settings("inference").batch_size == 50_000  # absent section: its defaults
    assert sc.section("psi") == {"truncate": 16}  # the raw table stays available


def test_a_sections_seed_defaults_to_the_run_seed():
    sc = config.loads(scenario_text("[data]\nsynthetic = 'x'\n[lr]\nepochs = 1\n[secureboost]\nseed = 9\n"))
    assert sc.settings(DataSettings).seed == 5 and sc.settings("lr").seed == 5
    assert sc.settings("secureboost").seed == 9


def test_only_scenario_sections_can_be_asked_for():
    sc = config.loads(scenario_text())
    with pytest.raises(config.ConfigError, match=r"unknown section \[horizontal.secagg\]"):
        sc.settings(SecAggSettings)  # a nested table is read through its section, [horizontal]
    with pytest.raises(config.ConfigError, match=r"unknown section \[lrr\]"):
        sc.settings("lrr")


def test_horizontal_section_is_parsed_at_load_with_nested_tables():
    text = scenario_text(
        '[horizontal]\naggregation = "secagg+"\nhidden = [8, 4]\n[horizontal.secagg]\nnum_shares = 3\n'
        '[horizontal.dp]\nkind = "local"\n[[horizontal.simulate_faults]]\nparty = "bank_b"\nround = 2\nkind = "nan"\n',
        mode="horizontal",
        parties=BANKS3,
    )
    h = config.loads(text).settings(HorizontalSettings)
    assert h.hidden == (8, 4) and h.secagg.num_shares == 3 and h.dp.local_sensitivity == 2.0
    assert h.faults == h.simulate_faults and h.fault_for("bank_b", 2) == "nan"
    with pytest.raises(config.ConfigError, match="needs exactly party, round, kind"):
        config.loads(text.replace('kind = "nan"\n', ""))
    with pytest.raises(config.ConfigError, match=r"\[horizontal.secagg\] modulus_range = 3: must be a power of two"):
        config.loads(text.replace("num_shares = 3", "modulus_range = 3"))


def test_every_setting_is_documented():
    for name in config.SECTION_NAMES:
        for row in config.describe(config.section_type(name)):
            assert row.doc.strip(), f"[{name}] {row.key} has no description"


# -- fedcredit config show -------------------------------------------------------------------------
def test_config_show_json_lists_effective_values_defaults_and_constraints():
    res = CliRunner().invoke(app, ["config", "show", str(REPO / "configs/vertical-lr.toml"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["mode"] == "vertical-lr" and list(doc["sections"]) == list(config.SECTION_NAMES)
    lr = {r["key"]: r for r in doc["sections"]["lr"]["settings"]}
    assert lr["epochs"]["value"] == 5 and lr["epochs"]["default"] == 10 and lr["epochs"]["in_file"]
    assert ">= 1" in lr["epochs"]["constraint"] and lr["epochs"]["description"]
    assert lr["seed"]["value"] == 42 and not lr["seed"]["in_file"]
    psi = {r["key"]: r for r in doc["sections"]["psi"]["settings"]}
    assert not doc["sections"]["psi"]["in_file"] and psi["truncate"]["value"] == 12


def test_config_show_tables_and_section_filter():
    res = CliRunner().invoke(
        app, ["config", "show", str(REPO / "configs/horizontal-secagg.toml"), "-s", "horizontal", "-s", "ledger"]
    )
    assert res.exit_code == 0, res.output
    assert "[horizontal]" in res.stdout and "[ledger]" in res.stdout and "[lr]" not in res.stdout
    assert "secagg.num_shares" in res.stdout and "power of two" in res.stdout


# -- CLI errors reach the terminal intact ----------------------------------------------------------
@pytest.mark.parametrize("command", [["config", "show"], ["simulate"]])
def test_cli_errors_keep_bracketed_section_names(tmp_path, command):
    path = tmp_path / "no-parties.toml"
    path.write_text('[run]\nname = "t"\nmode = "vertical-lr"\n')
    res = CliRunner().invoke(
        app, [*command, str(path), *(["--out", str(tmp_path / "o")] if command == ["simulate"] else [])]
    )
    assert res.exit_code == 2
    assert "no [parties.<name>] tables" in res.output


def test_ledger_cli_errors_keep_brackets(tmp_path):
    res = CliRunner().invoke(app, ["ledger", "verify", str(tmp_path / "[run].sqlite")])
    assert res.exit_code == 2 and "[run].sqlite" in res.output


def test_settings_rows_cover_nested_sections():
    keys = [r.key for r in config.describe(HorizontalSettings)]
    assert {"secagg.modulus_range", "ckks.scale_bits", "dp.kind", "simulate_faults"} <= set(keys)
    assert len(keys) == len(set(keys))
    assert all(dataclasses.is_dataclass(config.section_type(n)) for n in config.SECTION_NAMES)
