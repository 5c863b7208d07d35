"""``fedcredit deploy local``: a whole federation as separate processes on this machine.

Exactly what the organisations would run on their own machines (docs/deploy.md), on 127.0.0.1:
one ``flower-superlink`` (the coordinator: TLS with the federation CA's certificate, SuperNode
authentication on, no runtime dependency installation), one ``flower-supernode`` per party (its
own process, its own FLWR_HOME, its registered EC auth key, its ``--node-config`` with party, role,
data, node directory and egress-log key), the app submitted with ``flwr run``. The command waits
for the coordinator's ``status.json``, verifies the ledger against every node's egress log with
the *provisioned* public keys (not the ones the ledger declares), and stops every process it
started -- also on Ctrl-C, SIGTERM or any error.

Layout of the run directory ``DIR``: the coordinator's outputs at the top (ledger.sqlite,
metrics.json, status.json, models.json), ``nodes/<party>/`` each node's egress log and model part,
``keys/`` (unless ``--keys``), ``flower/`` Flower state (FLWR_HOME per process, generated app,
run and node configs), ``logs/`` one log per process, ``deploy.json`` this command's summary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fedcredit import config
from fedcredit.config import Scenario
from fedcredit.deploy.flwr_cli import (
    CLIENT_COMPONENT,
    SERVER_COMPONENT,
    FlwrCli,
    FlwrCliError,
    base_env,
    venv_bin,
    write_app_dir,
)
from fedcredit.deploy.keys import FederationKeys, ensure_keys, load_keys, write_peers_file
from fedcredit.deploy.processes import ProcessSet

log = logging.getLogger(__name__)
SUPERLINK = "superlink"


class DeployError(RuntimeError):
    """The deployment could not start, the run failed, or the ledger did not verify."""


class Interrupted(DeployError):
    """Ctrl-C or SIGTERM while the federation was running."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def supernode_name(party: str) -> str:
    return f"supernode:{party}"


def node_service_name(party: str) -> str:
    return f"node:{party}"


def bundle_sha256(app_dir: Path) -> str:
    """SHA-256 of the FAB ``flwr run`` builds from ``app_dir`` (Flower's build is deterministic)."""
    import hashlib

    from flwr.cli.build import build_fab_from_disk

    return hashlib.sha256(build_fab_from_disk(app_dir)).hexdigest()


@dataclass
class DeployOptions:
    """What ``fedcredit deploy local`` needs; everything else comes from the scenario."""

    scenario: Path
    out: Path
    keys: Path | None = None  # default: OUT/keys (made if absent)
    host: str = "127.0.0.1"
    data: dict[str, str] = field(default_factory=dict)  # party -> data source override
    startup_timeout: float = 90.0
    run_timeout: float = 3600.0
    poll_seconds: float = 1.0
    grace_seconds: float = 8.0
    server_app: str = SERVER_COMPONENT  # "module:attribute" of an installed ServerApp
    client_app: str = CLIENT_COMPONENT
    node_service: bool = True  # each party's data and keys in its own `fedcredit node serve`
    node_poll_seconds: float = 0.2  # cap on the SuperNode's idle sleeps (Flower: 3 s)
    pin_bundle: bool = True  # SuperNodes accept only the code-free bundle this command builds
    warm_clientapp: bool = True  # fork per-message ClientApps from a warm process (no interpreter start)
    resume: bool = False  # continue the interrupted run in OUT from its checkpoint.json (vertical runs)
    # relay messages over the coordinator's streaming data plane (parties.common.dataplane) once the
    # node services dialled in; Flower stays the control plane. Needs node_service.
    dataplane: bool = True


@dataclass
class Deployment:
    """One local federation: start it, submit the run, wait, collect, stop."""

    opts: DeployOptions
    scenario: Scenario = field(init=False)
    out: Path = field(init=False)
    keys: FederationKeys = field(init=False)
    procs: ProcessSet = field(default_factory=ProcessSet)
    port: int = 0
    cli: FlwrCli | None = None
    node_ids: dict[str, int] = field(default_factory=dict)
    run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    _down: set[str] = field(default_factory=set)
    _t_submit: float = 0.0
    app_dir: Path | None = None
    fab_sha256: str | None = None
    sockets: Path | None = None  # short private directory for the node services' Unix sockets

    def __post_init__(self) -> None:
        self.scenario = config.load(self.opts.scenario)
        self.out = Path(self.opts.out).resolve()
        if self.opts.resume:
            self._check_resumable()
        elif (self.out / "ledger.sqlite").exists():
            raise DeployError(
                f"{self.out} already holds a run (ledger.sqlite); choose another --out "
                "so the earlier run's ledger is not lost"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        names = [p.name for p in self.scenario.parties]
        if self.opts.keys is None:
            self.keys = ensure_keys(self.out / "keys", names, hosts=(self.opts.host,))
        else:
            self.keys = load_keys(self.opts.keys)
            for n in names:
                self.keys.party(n)  # clear error if a party has no keys
        if self.opts.host not in self.keys.hosts:
            raise DeployError(
                f"the coordinator certificate under {self.keys.root} is for "
                f"{list(self.keys.hosts)}, not {self.opts.host}"
            )
        unknown = set(self.opts.data) - set(names)
        if unknown:
            raise DeployError(
                f"--data for unknown part{'ies' if len(unknown) > 1 else 'y'} {sorted(unknown)}; "
                f"the scenario has {names}"
            )
        self.flower = self.out / "flower"
        self.logs = self.out / "logs"

    def _check_resumable(self) -> None:
        """``--resume``: OUT must hold an interrupted run of this scenario with a checkpoint.

        An earlier segment's ``status.json``/``deploy.json``/``metrics.json`` and its ``flower/``
        and ``logs/`` are kept under numbered names (``*.segment<n>``), so this command waits
        for the resumed coordinator's own status.
        """
        from fedcredit.ledger import read_records

        for name in ("ledger.sqlite", "checkpoint.json"):
            if not (self.out / name).exists():
                raise DeployError(f"cannot resume {self.out}: it has no {name} (not an interrupted run)")
        records = read_records(self.out / "ledger.sqlite")
        if records and records[-1].kind == "run_end":
            raise DeployError(f"cannot resume {self.out}: its ledger already ends the run ({records[-1].payload})")
        n = sum(1 for r in records if r.kind == "run_interrupted")
        for name in ("status.json", "deploy.json", "metrics.json"):
            if (self.out / name).exists():
                (self.out / name).replace(self.out / f"{Path(name).stem}.segment{n}.json")
        # the restarted coordinator is a new SuperLink (fresh Flower state, new Flower run); what
        # the run continues from is in the ledger, checkpoint.json and each node's own checkpoints
        for name in ("flower", "logs"):
            if (self.out / name).exists():
                (self.out / name).rename(self.out / f"{name}.segment{n}")

    # -- paths ----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.opts.host}:{self.port}"

    def _note(self, msg: str) -> None:
        log.info(msg)
        self.events.append(f"{time.strftime('%H:%M:%S')} {msg}")

    # -- coordinator ----------------------------------------------------------------------------
    def start_superlink(self) -> None:
        """Start the SuperLink with TLS and SuperNode authentication; wait until it answers."""
        t0 = time.monotonic()
        self.port = free_port(self.opts.host)
        k = self.keys
        argv = [
            venv_bin("flower-superlink"),
            "--ssl-ca-certfile",
            str(k.ca_cert),
            "--ssl-certfile",
            str(k.server_cert),
            "--ssl-keyfile",
            str(k.server_key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--isolation",
            "subprocess",
            "--database",
            str(self.flower / "superlink" / "state.db"),
            "--host",
            self.opts.host,
            "--port",
            str(self.port),
        ]
        (self.flower / "superlink").mkdir(parents=True, exist_ok=True)
        self.procs.start(SUPERLINK, argv, env=base_env(self.flower / "superlink"), log_path=self.logs / "superlink.log")
        self.cli = FlwrCli(self.flower / "cli", self.address, k.ca_cert)
        self._wait(
            lambda: self._superlink_answers(),
            self.opts.startup_timeout,
            "the SuperLink did not come up",
            proc=SUPERLINK,
        )
        self.timings["superlink_start_s"] = round(time.monotonic() - t0, 2)
        self._note(f"SuperLink up on https://{self.address} (TLS, SuperNode auth on)")

    def _superlink_answers(self) -> bool:
        assert self.cli is not None
        try:
            self.cli.supernodes()
            return True
        except FlwrCliError:
            return False

    # -- parties --------------------------------------------------------------------------------
    def service_config(self, party: str) -> dict[str, str]:
        """The node service's configuration (``fedcredit node serve --config``): data, keys, socket."""
        cfg = self.party_node_config(party)
        cfg["socket"] = str(self.node_socket(party))
        cfg["dataplane-ca"] = str(self.keys.ca_cert)  # the operator's own trust anchor for the data plane
        return cfg

    def start_node_service(self, party: str) -> None:
        import sys

        cfg_path = self.flower / "nodes" / f"{party}.service.toml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(tomli_w.dumps(self.service_config(party)))
        argv = [sys.executable, "-m", "fedcredit.cli.main", "node", "serve", "--config", str(cfg_path)]
        self.procs.start(
            node_service_name(party),
            argv,
            env=base_env(self.flower / party),
            log_path=self.logs / f"{party}.service.log",
        )

    def node_socket(self, party: str) -> Path:
        if self.sockets is None:
            import tempfile

            self.sockets = Path(tempfile.mkdtemp(prefix="fcnode-"))  # 0700; sun_path is 107 chars at most
        return self.sockets / party / "node.sock"

    def ensure_node_service(self, party: str) -> None:
        """Start the party's node service unless it runs; wait until its socket exists."""
        m = self.procs.procs.get(node_service_name(party))
        if m is None or not m.alive():
            self.start_node_service(party)
        self._wait(
            lambda: self.node_socket(party).exists(),
            self.opts.startup_timeout,
            f"the node service of {party!r} did not come up",
            proc=node_service_name(party),
        )

    def start_node_services(self) -> None:
        t0 = time.monotonic()
        names = [spec.name for spec in self.scenario.parties]
        for p in names:  # start all, then wait: they import and load in parallel
            if node_service_name(p) not in self.procs.procs or not self.procs.procs[node_service_name(p)].alive():
                self.start_node_service(p)
        for p in names:
            self.ensure_node_service(p)
        self.timings["node_services_start_s"] = round(time.monotonic() - t0, 2)
        self._note(f"{len(names)} node services listening under {self.sockets}")

    def party_node_config(self, party: str) -> dict[str, str]:
        spec = self.scenario.party(party)
        data = self.opts.data.get(party) or self.scenario.resolve(spec.data)
        if not data.startswith(("default_credit", "synthetic:")) and Path(data).exists():
            data = str(Path(data).resolve())
        pk = self.keys.party(party)
        node_dir = self.out / "nodes" / party
        peers = write_peers_file(self.keys, [p.name for p in self.scenario.parties], node_dir / "peers.json")
        return {
            "party": party,
            "role": spec.role,
            "data": data,
            "node-dir": str(node_dir),
            "egress-key": str(pk.egress_key),
            "peer-keys": str(peers),
            "scenario": str(Path(self.opts.scenario).resolve()),
        }

    def register_parties(self) -> None:
        assert self.cli is not None
        from concurrent.futures import ThreadPoolExecutor

        cli = self.cli
        with ThreadPoolExecutor(max_workers=8) as pool:  # one `flwr` process per party, in parallel
            ids = pool.map(lambda s: cli.register(self.keys.party(s.name).auth_pub, s.name), self.scenario.parties)
            for spec, node_id in zip(self.scenario.parties, ids):
                self.node_ids[spec.name] = node_id
        self._note("registered SuperNode keys: " + ", ".join(f"{p}={n}" for p, n in self.node_ids.items()))

    def supernode_argv(
        self, party: str, *, auth_key: Path | None = None, use_ca: bool = True, max_wait: float | None = None
    ) -> list[str]:
        """The exact command a party runs on its own machine (docs/deploy.md).

        ``auth_key`` / ``use_ca=False`` exist for the negative tests (an unregistered key, a node
        that does not trust the federation CA); ``max_wait`` bounds its reconnection attempts.
        """
        import sys

        cfg_path = self.flower / "nodes" / f"{party}.toml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        if self.opts.node_service:  # the SuperNode (and its ClientApp) learns only where to forward
            node_cfg: dict[str, str] = {"node-socket": str(self.node_socket(party))}
        else:
            node_cfg = self.party_node_config(party)
        cfg_path.write_text(tomli_w.dumps(node_cfg))
        # Flower's SuperNode inside fedcredit's launcher: bundle check + prompt polling
        argv = [sys.executable, "-m", "fedcredit.deploy.supernode", "--poll-seconds", str(self.opts.node_poll_seconds)]
        if self.opts.warm_clientapp:
            argv += ["--warm-clientapp", "--preload", self.opts.client_app.partition(":")[0]]
        if not self.opts.node_service:
            argv += ["--no-bundle-check"]
        elif self.opts.pin_bundle and self.fab_sha256:
            argv += ["--pin-fab-hash", self.fab_sha256]
        argv += ["--", "--superlink", self.address]
        if use_ca:
            argv += ["--root-certificates", str(self.keys.ca_cert)]
        argv += [
            "--auth-supernode-private-key",
            str(auth_key or self.keys.party(party).auth_key),
            "--node-config",
            str(cfg_path),
            "--isolation",
            "subprocess",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ]
        if max_wait is not None:
            argv += ["--max-wait-time", str(max_wait)]
        return argv

    def start_supernode(self, party: str, argv: list[str] | None = None) -> None:
        if self.opts.node_service:
            self.ensure_node_service(party)
        home = self.flower / party
        home.mkdir(parents=True, exist_ok=True)
        (self.out / "nodes" / party).mkdir(parents=True, exist_ok=True)
        self.procs.start(
            supernode_name(party),
            argv or self.supernode_argv(party),
            env=base_env(home),
            log_path=self.logs / f"{party}.log",
        )

    def start_parties(self) -> None:
        self.register_parties()
        self.prepare_app()
        if self.opts.node_service:
            self.start_node_services()
        t0 = time.monotonic()
        for spec in self.scenario.parties:
            self.start_supernode(spec.name)
        want = set(self.node_ids.values())
        cli = self.cli
        assert cli is not None
        self._wait(
            lambda: want <= cli.online_nodes(),
            self.opts.startup_timeout,
            "not every party's SuperNode came online",
            procs=[supernode_name(p) for p in self.node_ids],
        )
        self.timings["supernodes_start_s"] = round(time.monotonic() - t0, 2)
        self._note(f"{len(want)} SuperNodes online")

    # -- the run --------------------------------------------------------------------------------
    def prepare_app(self) -> Path:
        """Write the code-free app directory and run config; pin the bundle ``flwr run`` will build."""
        # node-ids: which Flower node id each party's *registered key* got, so the coordinator can
        # name a party that fails before introducing itself and check introductions against keys.
        run_config = {
            "scenario": str(Path(self.opts.scenario).resolve()),
            "out-dir": str(self.out),
            "coordinator-key": str(self.keys.ledger_key),
            "node-ids": json.dumps({p: str(n) for p, n in self.node_ids.items()}, sort_keys=True),
        }
        if self.opts.resume:
            run_config["resume"] = "true"
        if self.opts.dataplane and self.opts.node_service:
            # the coordinator's data-plane server: TLS with the SuperLink's CA-signed certificate; it
            # authenticates each node service against the party's provisioned node (egress) key
            run_config.update(
                {
                    "dataplane": "true",
                    "dataplane-host": self.opts.host,
                    "dataplane-cert": str(self.keys.server_cert),
                    "dataplane-key": str(self.keys.server_key),
                    "dataplane-node-keys": json.dumps(
                        {p: str(self.keys.party(p).egress_pub) for p in self.node_ids}, sort_keys=True
                    ),
                }
            )
        app = write_app_dir(self.flower / "app", run_config, server=self.opts.server_app, client=self.opts.client_app)
        (self.flower / "run-config.toml").write_text(tomli_w.dumps(run_config))
        self.app_dir = app
        self.fab_sha256 = bundle_sha256(app)
        return app

    def submit(self) -> int:
        assert self.cli is not None
        app = self.app_dir or self.prepare_app()
        self.run_id = self.cli.run(app, self.flower / "run-config.toml")
        self._t_submit = time.monotonic()
        self._note(f"run {self.run_id} submitted")
        return self.run_id

    def wait(self, on_poll: Callable[[Deployment], None] | None = None) -> dict[str, Any]:
        """Wait for the coordinator's status.json; returns it. Checks the SuperLink stays up."""
        assert self.cli is not None and self.run_id is not None
        status_path = self.out / "status.json"
        deadline = self._t_submit + self.opts.run_timeout
        next_check = time.monotonic() + 15
        finished_at: float | None = None
        while True:
            if status_path.exists():
                try:
                    status = json.loads(status_path.read_text())
                    break
                except json.JSONDecodeError:
                    pass  # being written
            self.procs.refresh()
            if not self.procs.procs[SUPERLINK].alive():
                raise DeployError("the SuperLink exited during the run:\n" + self.procs.procs[SUPERLINK].log_tail())
            for p in self.node_ids:
                m = self.procs.procs.get(supernode_name(p))
                if m is not None and not m.alive() and p not in self._down:
                    self._down.add(p)
                    self._note(
                        f"party {p!r}: its SuperNode process exited (code {m.popen.returncode}); "
                        "the coordinator will stop the run when it notices"
                    )
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 15
                try:
                    st = str(self.cli.run_info(self.run_id).get("status", ""))
                except FlwrCliError as exc:
                    log.warning("could not read the run status: %s", exc)
                    st = ""
                if st.startswith("finished") and finished_at is None:
                    finished_at = now
            if finished_at is not None and now - finished_at > 10:
                raise DeployError(
                    f"Flower says run {self.run_id} finished but the coordinator wrote no "
                    f"status.json; end of {self.logs / 'superlink.log'}:\n" + self.procs.procs[SUPERLINK].log_tail(40)
                )
            if now > deadline:
                self.cli.stop(self.run_id)
                raise DeployError(f"run {self.run_id} did not finish within {self.opts.run_timeout:.0f} s")
            if on_poll is not None:
                on_poll(self)
            time.sleep(self.opts.poll_seconds)
        self.timings["run_s"] = round(time.monotonic() - self._t_submit, 2)
        self._note(
            f"run {self.run_id} ended: {status.get('status')}"
            + (
                f" (party {status.get('party')!r}: {status.get('error')})"
                if status.get("status") != "completed"
                else ""
            )
        )
        return status

    # -- results --------------------------------------------------------------------------------
    def verify(self) -> dict[str, Any]:
        from fedcredit.ledger import load_public_key, verify

        egress = sorted((self.out / "nodes").glob("*/egress.sqlite"))
        keys = {p: load_public_key(self.keys.party(p).egress_pub) for p in self.node_ids}
        report = verify(
            self.out / "ledger.sqlite",
            public_key=load_public_key(self.keys.ledger_pub),
            egress=egress,
            egress_public_keys=keys,
        )
        return {
            "ok": report.ok,
            "intact": report.intact,
            "complete": report.complete,
            "records": report.records,
            "errors": report.errors[:10],
            "warnings": report.warnings[:10],
            "egress_logs": [str(p) for p in egress],
            "egress_matched": {c.node: f"{c.matched}/{c.messages_in_ledger}" for c in report.egress},
        }

    def summary(self, status: dict[str, Any]) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        mpath = self.out / "metrics.json"
        if mpath.exists():
            metrics = json.loads(mpath.read_text())
        flower: dict[str, Any] = {}
        if self.cli is not None and self.run_id is not None:
            try:  # Flower's own accounting: bytes through the SuperLink, ServerApp/ClientApp CPU time
                info = self.cli.run_info(self.run_id)
                flower = {k: info.get(k) for k in ("status", "network-traffic", "compute-time", "elapsed")}
            except FlwrCliError as exc:
                flower = {"error": str(exc)}
        return {
            "status": status,
            "run_id": self.run_id,
            "superlink": self.address,
            "flower_run": flower,
            "node_ids": self.node_ids,
            "timings": self.timings,
            "latency": epoch_latency(metrics, self.out / "ledger.sqlite", self.timings.get("run_s")),
            "verification": self.verify() if (self.out / "ledger.sqlite").exists() else None,
            "events": self.events,
            "logs": str(self.logs),
        }

    # -- plumbing -------------------------------------------------------------------------------
    def _wait(
        self,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        proc: str | None = None,
        procs: list[str] | None = None,
    ) -> None:
        names = ([proc] if proc else []) + (procs or [])
        deadline = time.monotonic() + timeout
        while not ready():
            for n in names:
                m = self.procs.procs[n]
                if not m.alive():
                    raise DeployError(f"{what}: {n} exited with code {m.popen.returncode}:\n{m.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n} ---\n{self.procs.procs[n].log_tail(10)}" for n in names)
                raise DeployError(f"{what} within {timeout:.0f} s\n{tails}")
            time.sleep(0.5)

    def stop(self) -> list[int]:
        """Stop every process (parties first, then the SuperLink). Returns pids still alive."""
        order: list[list[str]] = [  # the parties' nodes together, then their services, then the link
            [supernode_name(p) for p in self.node_ids],
            [node_service_name(p.name) for p in self.scenario.parties],
            [SUPERLINK],
        ]
        left = self.procs.stop_all(grace=self.opts.grace_seconds, order=order)
        if self.sockets is not None:
            import shutil

            shutil.rmtree(self.sockets, ignore_errors=True)
        if left:
            log.error("processes still running after stop: %s", left)
        return left


TRAIN_PHASES = ("hetero_lr", "secureboost", "train")


def epoch_latency(metrics: dict[str, Any], ledger: Path | None, run_seconds: float | None) -> dict[str, Any]:
    """Flower round trips and wall time, overall and per training epoch.

    Round trips are counted from the ledger's ``step`` records (one per coordinator -> nodes ->
    coordinator exchange), grouped by protocol phase; their timestamps give the wall time of each.
    The training phase's round trips, minus its init/finish, divided by the epochs run, is the
    number that grows with training length; the rest is a fixed cost per run.
    """
    import datetime as dt
    import statistics

    history = metrics.get("history") or []
    epochs = metrics.get("epochs") or len(history) or None
    train_seconds = metrics.get("train_seconds")
    out: dict[str, Any] = {
        "epochs": epochs,
        "flower_round_trips": metrics.get("flower_round_trips"),
        "train_seconds": train_seconds,
        "run_seconds": run_seconds,
    }
    transport = metrics.get("transport")
    if isinstance(transport, dict):  # the data plane carried some relay steps (parties.common.dataplane)
        out["dataplane_round_trips"] = transport.get("dataplane_round_trips")
        out["transport_flower_round_trips"] = transport.get("flower_round_trips")  # of all exchanges, these used Flower
        out["dataplane_streams"] = transport.get("streams")
        out["transport_by_phase"] = transport.get("by_phase")
    if epochs and train_seconds is not None:
        out["train_seconds_per_epoch"] = round(float(train_seconds) / float(epochs), 2)
    secs = [float(h["seconds"]) for h in history if isinstance(h, dict) and h.get("seconds") is not None]
    if secs:
        out["seconds_per_epoch"] = [round(x, 2) for x in secs]
    if ledger is None or not Path(ledger).exists():
        return out
    from fedcredit.ledger import read_records

    records = [
        (r.payload.get("step", "?"), dt.datetime.fromisoformat(r.ts.replace("Z", "+00:00")))
        for r in read_records(ledger)
        if r.kind == "step"
    ]
    # the coordinator's round trips; the exchanges streamed inside a step (``hetero_lr/2.17``) are
    # step records too, counted apart
    steps = [(n, t) for n, t in records if not _is_exchange(n)]
    out["streamed_exchanges"] = len(records) - len(steps)
    by_phase: dict[str, int] = {}
    for name, _ in steps:
        phase = _phase_of(name)
        by_phase[phase] = by_phase.get(phase, 0) + 1
    out["round_trips_by_phase"] = by_phase
    out["ledger_round_trips"] = len(steps)
    gaps = [(b - a).total_seconds() for (_, a), (_, b) in zip(steps, steps[1:])]
    if gaps:
        out["seconds_per_round_trip_median"] = round(statistics.median(gaps), 2)
        per_phase: dict[str, list[float]] = {}
        for (name, _), gap in zip(steps[1:], gaps):  # a step's record follows its round trip
            per_phase.setdefault(_phase_of(name), []).append(gap)
        out["seconds_per_round_trip_by_phase"] = {k: round(statistics.mean(v), 2) for k, v in per_phase.items()}
    train = [(n, t) for n, t in steps if _phase_of(n) in TRAIN_PHASES]
    if train and epochs:
        inner = [n for n, _ in train if not str(n).endswith(("/init", "/finish"))]
        out["train_round_trips"] = len(inner)  # includes the phase's one-off key exchange
        out["train_round_trips_per_epoch"] = round(len(inner) / float(epochs), 2)
        out["train_wall_seconds_per_epoch"] = round((train[-1][1] - train[0][1]).total_seconds() / float(epochs), 2)
    return out


def _is_exchange(step: object) -> bool:
    """An exchange inside a streamed step: ``<phase>/<n>.<m>`` (parties.common.exchange)."""
    last = str(step).rsplit("/", 1)[-1]
    return "." in last and all(part.isdigit() for part in last.split("."))


def _phase_of(step: object) -> str:
    """The protocol phase of a ledger step name (``hetero_lr/3``; a resumed segment's ``r1:hetero_lr/3``)."""
    return str(step).split("/", 1)[0].split(":", 1)[-1]


@contextlib.contextmanager
def _on_stop_signals(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT/SIGTERM while the block runs, then the previous handlers again.

    Only the main thread may set signal handlers; elsewhere (a test's worker thread) the block
    runs with the handlers as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _signals_raise() -> contextlib.AbstractContextManager[None]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` so ``finally`` blocks stop the federation."""

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}: stopping every process")

    return _on_stop_signals(handler)


def deploy_local(opts: DeployOptions, *, on_poll: Callable[[Deployment], None] | None = None) -> dict[str, Any]:
    """Start a local federation, run the scenario, verify the ledger, stop everything.

    Returns the summary also written to ``OUT/deploy.json``. Raises :class:`DeployError` if the
    federation could not start or the run produced no status; a run that *failed* (a party
    crashed) is returned with ``status.status == "failed"`` and the failing party named.
    """
    t0 = time.monotonic()
    dep = Deployment(opts)
    summary: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        with _signals_raise():
            try:
                dep.start_superlink()
                dep.start_parties()
                dep.submit()
                status = dep.wait(on_poll)
                summary = dep.summary(status)
                _add_round_trips(dep.out / "metrics.json", summary.get("latency") or {})
            finally:
                with _block_signals():
                    left = dep.stop()
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised below
        error = exc
        with _block_signals():  # idempotent; covers a signal that arrived just before the first stop
            left = dep.stop()
    summary.update({"wall_seconds": round(time.monotonic() - t0, 2), "left_running": left, "out": str(dep.out)})
    if error is not None:
        summary["error"] = f"{type(error).__name__}: {error}"
    (dep.out / "deploy.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    if error is not None:
        raise error
    if left:
        raise DeployError(f"processes still running after stop: {left}")
    return summary


def _add_round_trips(path: Path, latency: dict[str, Any]) -> None:
    """Put the deployed run's round trips (total, per phase, seconds each) into its metrics.json."""
    if not path.exists():
        return
    metrics = json.loads(path.read_text())
    metrics["deployment"] = {
        k: latency.get(k)
        for k in (
            "ledger_round_trips",
            "round_trips_by_phase",
            "seconds_per_round_trip_median",
            "seconds_per_round_trip_by_phase",
            "train_round_trips_per_epoch",
        )
    }
    if "transport" in metrics:  # the relay steps above, split by transport (Flower / data plane)
        metrics["deployment"]["transport"] = metrics["transport"]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    tmp.replace(path)


def _block_signals() -> contextlib.AbstractContextManager[None]:
    """While stopping, a second Ctrl-C must not abort the cleanup half-way."""
    return _on_stop_signals(signal.SIG_IGN)


def scenario_parties(path: Path) -> list[str]:
    return [p.name for p in config.load(path).parties]


__all__ = [
    "DeployError",
    "DeployOptions",
    "Deployment",
    "Interrupted",
    "deploy_local",
    "epoch_latency",
    "free_port",
    "node_service_name",
    "scenario_parties",
    "supernode_name",
]
