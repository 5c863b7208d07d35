"""Key material for real deployment, and the process-tree cleanup it relies on (no Flower needed)."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from typer.testing import CliRunner

from fedcredit.cli.main import app
from fedcredit.deploy.keys import (
    KeyMaterialError,
    certificate_hosts,
    ensure_keys,
    init_keys,
    load_auth_public_key,
    load_keys,
    make_party_keys,
)
from fedcredit.deploy.processes import ProcessSet, is_running, read_proc
from fedcredit.ledger import load_private_key, load_public_key

pytestmark = pytest.mark.deployment
PARTIES = ["credit_centre", "bank_a", "bank_b"]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keys_init_cli_files_permissions_and_san(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    res = CliRunner().invoke(
        app,
        [
            "keys",
            "init",
            "--out",
            str(out),
            "--parties",
            ",".join(PARTIES),
            "--hosts",
            "127.0.0.1,10.1.2.3,coordinator.example.org",
        ],
    )
    assert res.exit_code == 0, res.output
    files = [p for p in out.rglob("*") if p.is_file()]
    expected = {
        "ca/ca.pem",
        "ca/ca.key",
        "coordinator/server.pem",
        "coordinator/server.key",
        "coordinator/ledger.key",
        "coordinator/ledger.pub",
        "manifest.json",
    }
    for party in PARTIES:
        expected |= {f"parties/{party}/{f}" for f in ("auth.key", "auth.pub", "egress.key", "egress.pub")}
    assert {str(p.relative_to(out)) for p in files} == expected
    for p in files:
        assert _mode(p) == 0o600, f"{p} has mode {oct(_mode(p))}"
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        assert _mode(d) == 0o700, f"{d} has mode {oct(_mode(d))}"

    ca = x509.load_pem_x509_certificate((out / "ca/ca.pem").read_bytes())
    srv = x509.load_pem_x509_certificate((out / "coordinator/server.pem").read_bytes())
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.example.org"]
    assert certificate_hosts(out / "coordinator/server.pem")[0] == "127.0.0.1"
    # the server certificate is issued and signed by the CA, and is not itself a CA
    assert srv.issuer == ca.subject
    srv.verify_directly_issued_by(ca)
    assert not srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the TLS private key matches the certificate
    srv_key = serialization.load_pem_private_key((out / "coordinator/server.key").read_bytes(), None)
    assert srv_key.public_key().public_numbers() == srv.public_key().public_numbers()

    for party in PARTIES:
        d = out / "parties" / party
        # SuperNode auth: OpenSSH EC keys on a NIST curve, the form flower-supernode / flwr read
        priv = serialization.load_ssh_private_key((d / "auth.key").read_bytes(), None)
        assert isinstance(priv, ec.EllipticCurvePrivateKey) and priv.curve.name == "secp384r1"
        pub = load_auth_public_key(d / "auth.pub")
        assert pub.public_numbers() == priv.public_key().public_numbers()
        egress = load_private_key(d / "egress.key")
        assert isinstance(egress, Ed25519PrivateKey)
        assert load_public_key(d / "egress.pub").public_bytes_raw() == egress.public_key().public_bytes_raw()
    ledger = load_private_key(out / "coordinator/ledger.key")
    assert isinstance(load_public_key(out / "coordinator/ledger.pub"), Ed25519PublicKey)
    assert load_public_key(out / "coordinator/ledger.pub").public_bytes_raw() == ledger.public_key().public_bytes_raw()
    # every party got distinct keys
    assert len({(out / "parties" / p / "auth.pub").read_bytes() for p in PARTIES}) == len(PARTIES)
    assert sorted(load_keys(out).parties) == sorted(PARTIES)


def test_keys_default_host_refuse_overwrite_and_bad_input(tmp_path: Path) -> None:
    fk = init_keys(tmp_path / "k", ["bank"])
    assert certificate_hosts(fk.server_cert) == ["127.0.0.1"]
    before = fk.ca_key.read_bytes()
    with pytest.raises(KeyMaterialError, match="refusing to overwrite"):
        init_keys(tmp_path / "k", ["bank"])
    assert fk.ca_key.read_bytes() == before
    with pytest.raises(KeyMaterialError, match="invalid party name"):
        init_keys(tmp_path / "k2", ["Bank A"])
    with pytest.raises(KeyMaterialError, match="invalid host"):
        init_keys(tmp_path / "k3", ["bank"], hosts="not a host!")
    with pytest.raises(KeyMaterialError, match="repeat"):
        init_keys(tmp_path / "k4", ["bank", "bank"])
    # a key file others can read is refused when loading
    fk.parties["bank"].egress_key.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="readable by others"):
        load_keys(fk.root)
    fk.parties["bank"].egress_key.chmod(0o600)
    # ensure_keys adds a new party without touching existing keys
    fk2 = ensure_keys(fk.root, ["bank", "credit_centre"])
    assert fk2.ca_key.read_bytes() == before and "credit_centre" in fk2.parties
    with pytest.raises(KeyMaterialError, match="already exist"):
        make_party_keys(fk.root, "bank")
    res = CliRunner().invoke(app, ["keys", "init", "--out", str(fk.root), "--parties", "bank"])
    assert res.exit_code == 2 and "refusing to overwrite" in res.output


def test_keys_party_cli_makes_only_that_party(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["keys", "party", "--out", str(tmp_path), "--name", "bank_a"])
    assert res.exit_code == 0, res.output
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert made == [f"parties/bank_a/{f}" for f in ("auth.key", "auth.pub", "egress.key", "egress.pub")]
    assert "auth.pub" in res.output and "egress.pub" in res.output


def test_process_set_stops_detached_grandchildren(tmp_path: Path) -> None:
    """Like Flower's SuperLink: a child that starts a helper in a new session, then the child dies."""
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "time.sleep(120)\n"
    )
    ps = ProcessSet()
    m = ps.start("parent", [sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "p.log")
    deadline = time.monotonic() + 20
    while len(ps.running()) < 3 and time.monotonic() < deadline:
        ps.refresh()
        time.sleep(0.1)
    members = ps.running()
    assert len(members) == 3 and m.pid in members
    starts = {pid: read_proc(pid).start for pid in members}  # type: ignore[union-attr]  # members are running processes
    # kill only the parent: the helpers are orphaned but still known
    subprocess.run(["kill", "-9", str(m.pid)], check=True)
    m.popen.wait(5)
    ps.refresh()
    assert len(ps.running()) == 2
    assert ps.stop_all(grace=2) == []
    assert not any(is_running(pid, st) for pid, st in starts.items())
    assert ps.running() == []
