"""The SuperNode launcher's patches apply to the installed Flower and do what they say.

* prompt polling: every sleep of ``flwr.supernode.start_client_internal`` is capped, nothing else;
* bundle check: a code-carrying bundle goes down Flower's own refusal path (``_verify_fab`` is
  False, so Flower answers with its INVALID_FAB error), an honest one passes;
* warm starts: the zygote forks a process that runs the given entry point with the given argv.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.supercore.fab import Fab
from flwr.supernode import start_client_internal as sci

from fedcredit.deploy import supernode
from fedcredit.deploy.flwr_cli import write_app_dir


@pytest.fixture
def restore_flower(monkeypatch: pytest.MonkeyPatch) -> None:
    for attr in ("time", "subprocess", "_pull_and_store_message", "_verify_fab"):
        monkeypatch.setattr(sci, attr, getattr(sci, attr))  # put back after the test


def test_poll_cap_applies_to_that_module_only(restore_flower: None) -> None:
    supernode.install(poll_seconds=0.05, pinned_sha256=None, check=False)
    t = time.monotonic()
    sci.time.sleep(3)  # Flower's idle sleep
    assert time.monotonic() - t < 1.0
    assert sci.time.time() == pytest.approx(time.time(), abs=1)  # everything else is the real module
    assert time.sleep is not sci.time.sleep


def _pull_through_patch(fab: Fab) -> bool:
    """Drive the patched _pull_and_store_message's FAB path; return _verify_fab's verdict."""
    verdict: list[bool] = []

    def fake_original(**kw: object) -> None:  # what Flower does with get_fab and trusted_entities
        got = kw["get_fab"](fab.hash_str, 1)  # type: ignore[operator]
        assert kw["trusted_entities"], "Flower would skip verification"
        assert got.verifications.get("valid_license")
        verdict.append(sci._verify_fab(got, kw["trusted_entities"]))  # type: ignore[arg-type]

    sci._pull_and_store_message = fake_original  # type: ignore[assignment]
    supernode.install(poll_seconds=None, pinned_sha256=None)
    sci._pull_and_store_message(get_fab=lambda h, r: fab, trusted_entities=None)  # type: ignore[call-arg]
    return verdict[0]


def test_bundle_with_code_goes_down_flowers_refusal_path(tmp_path: Path, restore_flower: None) -> None:
    app = write_app_dir(tmp_path / "app", {})
    honest = build_fab_from_disk(app)
    assert _pull_through_patch(Fab("h", honest, {})) is True
    (app / "evil.py").write_text("print('hi')")
    assert _pull_through_patch(Fab("h", build_fab_from_disk(app), {})) is False


def test_zygote_forks_flowers_clientapp_entry_point(capfd: pytest.CaptureFixture[str]) -> None:
    from fedcredit.deploy import superexec

    zygote = superexec.start_zygote(["json"])
    try:
        zygote.launch(["--help"])  # Flower's flwr_clientapp() prints its usage and exits
        deadline = time.monotonic() + 30
        while "Run a Flower ClientApp" not in capfd.readouterr().out:
            assert time.monotonic() < deadline, "the forked flwr-clientapp did not run"
            time.sleep(0.1)
    finally:
        zygote.close()  # EOF on its pipe: the zygote exits
    pid, _status = os.waitpid(zygote.pid, 0)
    assert pid == zygote.pid
