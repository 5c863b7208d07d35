"""The run report: its numbers against independent references, its sections, and who sees what.

A real (small) vertical run is made once per module through the Python API; its report is then
checked for every section, for the curves' numbers (scikit-learn as the reference) and for the
party views: the credit centre's own report must show neither the bank's weights nor any test
score, and planting the bank's scores in the centre's directory must not change that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

import fedcredit
from fedcredit.report import SECTION_IDS, ReportError, curves, load_run, write_report
from tests.conftest import write_vertical_subset

ROWS = 1500


def vertical_scenario(d: Path) -> str:
    return f"""
[run]
name = "report-test"
mode = "vertical-lr"
seed = 42
[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
[consent]
mode = "demo"
[lr]
epochs = 3
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> fedcredit.RunResult:
    d = tmp_path_factory.mktemp("rdata")
    write_vertical_subset(d, ROWS)
    result = fedcredit.simulate(vertical_scenario(d), out=tmp_path_factory.mktemp("rrun") / "run")
    assert result.completed and result.verified, result.status
    return result


# -- the numbers ---------------------------------------------------------------------------


def test_curves_match_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.normal(size=2000) + y, 2)  # ties included
    fpr, tpr = curves.roc(y, s)
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)
    assert abs(np.trapezoid(tpr, fpr) - roc_auc_score(y, s)) < 1e-12
    assert abs(curves.ks_curve(y, s).ks - np.max(ref_tpr - ref_fpr)) < 1e-12
    pop, cap, lift = curves.gains(y, s)
    k = 500  # the riskiest quarter, counted by hand
    assert cap[k] == pytest.approx(y[np.argsort(-s, kind="mergesort")][:k].sum() / y.sum())
    assert lift[k] == pytest.approx(cap[k] / pop[k])


def test_score_bands_count_every_row_once_riskiest_first():
    y = np.array([1] * 10 + [0] * 90)
    s = np.r_[np.linspace(0.9, 1.0, 10), np.linspace(0.0, 0.5, 90)]
    bands = curves.score_bands(y, s)
    assert [b.rows for b in bands] == [10] * 10 and sum(b.bads for b in bands) == 10
    assert bands[0].bad_rate == 1.0 and all(b.bads == 0 for b in bands[1:])
    assert bands[-1].cumulative_bad_rate == pytest.approx(0.1)
    pred, obs, n = curves.calibration(y, s, bins=10)
    assert n.sum() == 100 and obs[-1] == 1.0 and pred[0] == pytest.approx(s[np.argsort(s)][:10].mean())


# -- the harness report --------------------------------------------------------------------


def sections(html: str) -> dict[str, str]:
    parts = re.split(r'(?=<section id=")', html)
    return {re.match(r'<section id="([^"]+)"', p).group(1): p for p in parts if p.startswith("<section id=")}


def test_every_run_writes_a_self_contained_report_with_every_section(run):
    html = run.report_path.read_text()
    found = sections(html)
    assert list(found) == list(SECTION_IDS)
    # self-contained: nothing is fetched (images inline, no scripts, a CSP that forbids loading)
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    assert "default-src 'none'" in html
    imgs = re.findall(r'<img class="plot" alt="([^"]+)" src="data:image/png;base64,', html)
    for title in ("ROC, test set", "KS separation, test set", "Score distribution by class", "Calibration"):
        assert title in imgs
    assert "Cumulative gains and lift" in imgs and "Loss per epoch" in imgs
    assert "Phases (from the ledger's timestamps)" in imgs
    q = found["quality"]
    assert "Score bands" in q and q.count("<tr>") >= 10
    c = found["compliance"]
    assert 'class="ok">verified' in c and "credit_centre" in c and "bank" in c
    m = json.loads((run.out / "metrics.json").read_text())
    assert f"{m['auc']:.4f}" in found["summary"]
    assert "matches" in found["settings"] and "flwr" in found["settings"]


def test_report_cmd_rebuilds_the_report(run, tmp_path):
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    out = tmp_path / "again.html"
    res = CliRunner().invoke(app, ["report", str(run.out), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert list(sections(out.read_text())) == list(SECTION_IDS)
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no ledger.sqlite" in res.output


def test_a_partys_report_shows_only_what_that_party_may_see(run, tmp_path):
    centre = load_run(run.out, "credit_centre")
    assert centre.test_scores is None and centre.reference_scores == {} and set(centre.models) == {"credit_centre"}
    bank = load_run(run.out, "bank")
    assert bank.test_scores is not None and set(bank.models) == {"bank"} and bank.reference_scores == {}
    harness = load_run(run.out)
    assert set(harness.models) == {"bank", "credit_centre"} and harness.reference_scores

    html = write_report(run.out, party="credit_centre").read_text()
    assert "bank: own weights" not in html and "credit_centre: own weights" in html
    assert "ROC, test set" not in html and "holds no labels" in html
    # plant: the bank's scores and model copied into the centre's directory must still not show up
    copy = tmp_path / "run"
    shutil.copytree(run.out, copy)
    shutil.copy(copy / "nodes/bank/test_scores.npz", copy / "nodes/credit_centre/test_scores.npz")
    planted = write_report(copy, party="credit_centre").read_text()
    assert "ROC, test set" not in planted
    # ... while the bank's own report does draw its curves (so the check above can fail)
    assert "ROC, test set" in write_report(copy, party="bank").read_text()
    coordinator = load_run(copy, "coordinator")
    assert coordinator.test_scores is None and coordinator.models == {} and coordinator.reference_scores == {}
    html = write_report(copy, party="coordinator").read_text()
    assert "own weights" not in html and "ROC, test set" not in html and "Ledger:" in html
    with pytest.raises(ReportError, match="no party 'mallory'"):
        load_run(run.out, "mallory")


def test_a_failed_runs_report_names_the_party_and_step(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.out, copy)
    status = json.loads((copy / "status.json").read_text())
    status.update(status="failed", party="credit_centre", step="hetero_lr/3", error="planted failure")
    (copy / "status.json").write_text(json.dumps(status))
    html = write_report(copy).read_text()
    assert "party &#x27;credit_centre&#x27; at step &#x27;hetero_lr/3&#x27;" in html


# -- in a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(path: Path) -> dict:
    """Open ``path`` offline in headless Chromium; return sections, images and every problem seen.

    Any network request is blocked and reported (the report must open with no network), as are
    console errors, page errors and images that did not decode or take no room on the page.
    """
    if os.environ.get("FEDCREDIT_REQUIRE_BROWSER") != "1":
        if CHROMIUM is None:
            pytest.skip("no Chromium on this machine (apt-get install chromium; CI installs it)")
        pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "FEDCREDIT_REQUIRE_BROWSER=1 but no chromium on PATH"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            def no_network(route):
                if route.request.url.startswith(("file:", "data:")):
                    return route.continue_()
                problems.append(f"network request: {route.request.url}")
                return route.abort()

            page.route("**/*", no_network)
            page.goto(path.resolve().as_uri(), wait_until="load")
            found = page.eval_on_selector_all("section.report-section", "els => els.map(e => e.id)")
            images = page.eval_on_selector_all(
                "img",
                """els => els.map(e => { const r = e.getBoundingClientRect();
                    return {alt: e.alt, complete: e.complete, natural: e.naturalWidth, w: r.width, h: r.height}; })""",
            )
        finally:
            browser.close()
    for img in images:
        if not (img["complete"] and img["natural"] > 0 and img["w"] > 0 and img["h"] > 0):
            problems.append(f"plot not rendered: {img}")
    return {"sections": found, "images": images, "problems": problems}


def test_report_renders_in_headless_chromium(run):
    seen = open_in_chromium(run.report_path)
    assert seen["sections"] == list(SECTION_IDS)
    assert len(seen["images"]) >= 8  # 5 quality plots, training, 2 per-party, timeline
    assert seen["problems"] == []


def test_browser_check_catches_a_broken_plot_and_a_network_fetch(run, tmp_path):
    html = run.report_path.read_text()
    broken = re.sub(r'src="data:image/png;base64,[^"]{40}', 'src="data:image/png;base64,AAAA', html, count=1)
    broken = broken.replace("</body>", '<img src="https://example.invalid/x.png"></body>')
    path = tmp_path / "broken.html"
    path.write_text(broken)
    problems = open_in_chromium(path)["problems"]
    assert any("plot not rendered" in p for p in problems), problems
    assert any("example.invalid" in p for p in problems), problems


def test_horizontal_report_shows_rounds_participation_and_a_planted_dropout(tmp_path):
    scenario = fedcredit.Scenario.from_file(Path(__file__).resolve().parents[1] / "configs/horizontal-plain.toml")
    scenario = scenario.with_settings(
        {"horizontal.rounds": 2, "horizontal.simulate_faults": [{"party": "bank_b", "round": 2, "kind": "raise"}]}
    )
    result = fedcredit.simulate(scenario, out=tmp_path / "h", reference=False)
    assert result.completed and result.verified, result.status
    found = sections(result.report_path.read_text())
    h = found["horizontal"]
    assert "Global model per round (holdout)" in h and "Participation per round" in h
    rows = dict(re.findall(r"<tr><td>(bank_[abc])</td><td[^>]*>[^<]*</td><td>([^<]*)</td>", h))
    assert rows == {"bank_a": "none", "bank_b": "2", "bank_c": "none"}


# -- progress and run.log ------------------------------------------------------------------


def test_progress_follows_the_ledger_to_the_end(run):
    import io

    from fedcredit.progress import LedgerProgress, read_new

    scenario = fedcredit.Scenario.from_toml((run.out / "scenario.toml").read_text()).load()
    from rich.console import Console

    progress = LedgerProgress(run.out, scenario, Console(file=io.StringIO()))
    assert (progress.unit, progress.total) == ("epoch", 3)
    progress.poll()
    s = progress.state
    assert s.ended == "completed" and s.done == 3 and s.phase == "release"
    assert s.records == len(read_new(run.out / "ledger.sqlite", -1))
    assert progress.describe().startswith("release/") and "epoch 3/3" in progress.describe()
    assert read_new(run.out / "missing.sqlite", -1) == []


def test_run_log_keeps_info_off_the_terminal(tmp_path):
    import io
    import logging

    from fedcredit.runtime import run_log

    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with run_log(tmp_path):
            logging.getLogger("parties.common.relay").info("hetero_lr/3: bank epoch=1")
            logging.getLogger("fedcredit").warning("a warning stays visible")
        logging.getLogger("fedcredit").error("after the run: the terminal is back")
    finally:
        root.removeHandler(handler)
    log = (tmp_path / "run.log").read_text()
    assert "hetero_lr/3: bank epoch=1" in log and "a warning stays visible" in log
    assert "hetero_lr/3" not in terminal.getvalue() and "a warning stays visible" in terminal.getvalue()
    assert handler.level == logging.NOTSET and "after the run" in terminal.getvalue()


def test_secureboost_report_draws_trees_and_the_published_importances(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_vertical_subset(d, ROWS)
    text = vertical_scenario(d).replace('mode = "vertical-lr"', 'mode = "secureboost"')
    text = (
        text.split("[lr]")[0] + "[secureboost]\nn_trees = 3\nmax_depth = 2\nkey_bits = 1024\ninsecure_test_key = true\n"
    )
    result = fedcredit.simulate(text, out=tmp_path / "sb")
    assert result.completed and result.verified and result.report_path is not None, result.status
    found = sections(result.report_path.read_text())
    assert "Loss per tree" in found["training"] and "Validation metric per tree" in found["training"]
    assert "released model has 3 trees" in found["training"]
    for party in ("bank", "credit_centre"):
        assert f"{party}: split importance by gain (published)" in found["parties"]
    assert "ROC, test set" in found["quality"]


def test_feature_gains_reads_each_published_shape():
    from fedcredit.report.builder import feature_gains

    host = {"gain": {"AGE": 2.0, "PAY_0": 9.5}, "split_count": {"AGE": 1, "PAY_0": 4}}
    guest = {"guest": {"gain": {"PAY_6": 3.0}, "split_count": {"PAY_6": 2}}, "host": {"gain": 11.5, "split_count": 5}}
    assert feature_gains(host) == {"AGE": 2.0, "PAY_0": 9.5}
    assert feature_gains(guest) == {"PAY_6": 3.0}
    assert feature_gains({"x1": 0.5}) == {"x1": 0.5}
    assert feature_gains({"weird": {"nested": "text"}}) == {} and feature_gains(None) == {}
