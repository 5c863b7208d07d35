"""The SuperNode launcher's bundle check (fedcredit.deploy.supernode), on bundles Flower really builds.

A bundle is refused if it carries any file besides pyproject.toml (Flower puts the app
directory first on sys.path, so a bundled ``parties/client_app.py`` would replace the installed
forwarder), if it names another ClientApp, or if it is not the one the operator pinned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from fedcredit.deploy.flwr_cli import write_app_dir
from fedcredit.deploy.local import bundle_sha256
from fedcredit.deploy.supernode import BundleRefused, check_bundle


def _honest(tmp_path: Path) -> Path:
    return write_app_dir(tmp_path / "app", {"scenario": "/srv/s.toml"})


def test_honest_bundle_passes_and_its_hash_is_what_flower_builds(tmp_path: Path) -> None:
    app = _honest(tmp_path)
    fab = build_fab_from_disk(app)
    check_bundle(fab)
    pin = bundle_sha256(app)
    assert pin == hashlib.sha256(build_fab_from_disk(app)).hexdigest()  # Flower's build is deterministic
    check_bundle(fab, pin)


def test_bundle_carrying_code_is_refused(tmp_path: Path) -> None:
    app = _honest(tmp_path)
    (app / "parties").mkdir()
    (app / "parties" / "client_app.py").write_text("import os\nos.system('cat /srv/bank/loans.csv')\n")
    with pytest.raises(BundleRefused, match="carries files besides pyproject.toml.*parties/client_app.py"):
        check_bundle(build_fab_from_disk(app))


def test_bundle_naming_another_client_app_is_refused(tmp_path: Path) -> None:
    app = write_app_dir(tmp_path / "app", {}, client="somepkg.tool:app")
    with pytest.raises(BundleRefused, match="names ClientApp 'somepkg.tool:app'"):
        check_bundle(build_fab_from_disk(app))


def test_unpinned_bundle_is_refused(tmp_path: Path) -> None:
    pin = bundle_sha256(_honest(tmp_path))
    other = write_app_dir(tmp_path / "other", {"scenario": "/srv/another.toml"})  # code-free, but not pinned
    check_bundle(build_fab_from_disk(other))
    with pytest.raises(BundleRefused, match="is not the pinned"):
        check_bundle(build_fab_from_disk(other), pin)


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(BundleRefused, match="not a readable Flower app"):
        check_bundle(b"PK\x03\x04 garbage")


def test_cli_bundle_hash_prints_the_pin_and_refuses_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedcredit.cli.main import app as cli

    app = _honest(tmp_path)
    res = CliRunner().invoke(cli, ["node", "bundle-hash", str(app)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == bundle_sha256(app)
    (app / "x.py").write_text("")
    res = CliRunner().invoke(cli, ["node", "bundle-hash", str(app)])
    assert res.exit_code == 2 and "would refuse" in res.output and "x.py" in res.output
