"""A real SuperLink (TLS + SuperNode authentication) refuses nodes it should refuse.

One SuperLink for the module; each test starts real ``flower-supernode`` processes against it.
The positive control (registered key + federation CA -> online) shows the refusals are caused by
the missing registration / CA and not by a broken setup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedcredit.deploy.flwr_cli import FlwrCli, FlwrCliError
from fedcredit.deploy.keys import init_keys, make_party_keys
from fedcredit.deploy.local import DeployOptions, Deployment, supernode_name
from fedcredit.deploy.processes import all_processes

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(240)]

SCENARIO = """
[run]
name = "auth-probe"
mode = "vertical-lr"

[parties.bank]
role = "bank"

[parties.credit_centre]
role = "credit_centre"
"""


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = tmp_path_factory.mktemp("deploy-auth")
    (d / "scenario.toml").write_text(SCENARIO)
    dep = Deployment(DeployOptions(scenario=d / "scenario.toml", out=d / "run", startup_timeout=60))
    try:
        dep.start_superlink()
        dep.register_parties()
        yield dep
    finally:
        left = dep.stop()
        assert left == [], f"processes left running: {left}"
        ours = [p for p in all_processes() if p.pid in dep.procs.seen and p.state not in ("Z", "X")
                and p.start == dep.procs.seen[p.pid]]
        assert ours == []


def _online(dep: Deployment) -> set[int]:
    assert dep.cli is not None
    return dep.cli.online_nodes()


def _run_to_exit(dep: Deployment, party: str, argv: list[str], timeout: float = 60) -> tuple[int | None, str]:
    dep.procs.procs.pop(supernode_name(party), None)
    dep.start_supernode(party, argv)
    m = dep.procs.procs[supernode_name(party)]
    deadline = time.monotonic() + timeout
    while m.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    code = m.popen.poll()
    text = m.log_path.read_text(errors="replace")
    if m.alive():
        dep.procs.kill(supernode_name(party))
    return code, text


def test_registered_node_with_ca_comes_online(link: Deployment) -> None:
    link.start_supernode("bank")
    want = link.node_ids["bank"]
    deadline = time.monotonic() + 60
    while want not in _online(link):
        assert link.procs.procs[supernode_name("bank")].alive(), \
            link.procs.procs[supernode_name("bank")].log_tail()
        assert time.monotonic() < deadline, "registered SuperNode did not come online"
        time.sleep(1)


def test_unregistered_key_is_refused(link: Deployment, tmp_path: Path) -> None:
    rogue = make_party_keys(tmp_path, "credit_centre")  # valid EC key, never registered
    before = {n["node-id"] for n in link.cli.supernodes()}  # type: ignore[union-attr]
    code, text = _run_to_exit(link, "credit_centre",
                              link.supernode_argv("credit_centre", auth_key=rogue.auth_key, max_wait=15))
    assert code not in (None, 0), "a SuperNode with an unregistered key kept running"
    assert "Failed to activate SuperNode" in text, text[-2000:]
    after = link.cli.supernodes()  # type: ignore[union-attr]
    assert {n["node-id"] for n in after} == before, "the SuperLink created a node for an unregistered key"
    assert link.node_ids["credit_centre"] not in _online(link)


def test_node_without_federation_ca_cannot_connect(link: Deployment, tmp_path: Path) -> None:
    # no CA at all (the system trust store does not know the federation's CA)
    code, text = _run_to_exit(link, "credit_centre",
                              link.supernode_argv("credit_centre", use_ca=False, max_wait=15))
    assert code not in (None, 0)
    assert "CERTIFICATE_VERIFY_FAILED" in text, text[-2000:]
    # another federation's CA: the certificate chain does not verify either
    other = init_keys(tmp_path / "other", [])
    argv = link.supernode_argv("credit_centre", use_ca=False, max_wait=15)
    argv[3:3] = ["--root-certificates", str(other.ca_cert)]
    code, text = _run_to_exit(link, "credit_centre", argv)
    assert code not in (None, 0)
    assert "CERTIFICATE_VERIFY_FAILED" in text, text[-2000:]
    assert link.node_ids["credit_centre"] not in _online(link)
    # the operator's CLI without the CA cannot reach the Control API either
    cli = FlwrCli(tmp_path / "cli", link.address, other.ca_cert, timeout=60)
    with pytest.raises(FlwrCliError):
        cli.supernodes()
