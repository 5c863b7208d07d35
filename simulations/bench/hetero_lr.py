"""Benchmark one epoch of two-party hetero-LR (protocols.hetero_lr) against the same protocol on ``phe``.

    .venv/bin/python simulations/bench/hetero_lr.py [--rows 30000] [--quick] [--key-bits 2048]
                                                    [--phe-rows 96] [--workers 1]

Data: default_credit (bank 13 features + intercept, centre 10), money columns signed-log1p then
z-scored, as the lead's local preprocessing does; ``--rows`` above 30,000 tiles it.
One epoch (batch 4096, 2048-bit keys by default) runs three ways:

* ``sequential``: both parties in this process (one core does everything), relayed like the
  coordinator does, each party round-tripped through ``to_state``/``from_state`` every step
  (as a Flower ClientApp reloading ``context.state``);
* ``parallel``: each party in its own process, the relay hands both their inbox at once and
  waits for both (what a deployment does, one core per party);
* ``phe``: the same per-batch operations through ``phe``'s ``EncryptedNumber`` API (encrypt,
  ``+ float``, ``* float``, ``sum``, decrypt) on ``--phe-rows`` rows, scaled linearly to the
  epoch, plus its per-batch fixed cost (masked decryptions) times the number of batches.

Figures: ``epoch_seconds`` is the parallel wall time (the deployment figure on 2 cores),
``epoch_seconds_sequential`` the one-core wall time, ``epoch_cpu_seconds`` both parties' CPU
time (what one quiet core would take), ``epoch_seconds_cpu_model`` the sum over relay steps of
the slower party's CPU time in that step (what two quiet cores would take, relay latency aside). ``ratio`` compares like with like, one core's work for
the whole epoch: ``phe_epoch_seconds_est`` (phe CPU seconds) / ``epoch_cpu_seconds``. On a busy
machine wall times are inflated by other processes; CPU seconds are the steadier figure.
Key generation is excluded (setup). Each process keeps its key objects between steps (the
hetero-LR key cache, protocols.hetero_lr.keys), as a long-lived ClientApp process does.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocols.common.party import Envelope, ProtocolError  # noqa: E402
from protocols.hetero_lr import (  # noqa: E402
    BankLR,
    CentreLR,
    HeteroLRConfig,
    batch_schedule,
    batches_per_epoch,
)
from protocols.hetero_lr.memo import frozen  # noqa: E402
from protocols.hetero_lr.scales import CHECK_BITS, window_bits  # noqa: E402
from simulations.bench._progress import BenchProgress, add_progress_flag  # noqa: E402

MONEY = ["LIMIT_BAL"] + [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)]


def load_data(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(X_bank, y, X_centre) for ``rows`` rows, preprocessed per party; and the data source."""
    try:
        from fedcredit.data import default_credit as dc

        df = dc.load_raw()
        bank_cols, centre_cols, label = dc.BANK_FEATURES, dc.CENTRE_FEATURES, "default_12m"
        source = "default_credit (bundled)"
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - only without the bundled data
        logging.warning("bundled default_credit unavailable (%s); using synthetic features", exc)
        rng = np.random.default_rng(0)
        Xb, Xc = rng.normal(size=(rows, 13)), rng.normal(size=(rows, 10))
        y = (rng.random(rows) < 1 / (1 + np.exp(-(Xb[:, 0] + Xc[:, 0] - 1.3)))).astype(np.int8)
        return Xb, y, Xc, "synthetic"
    reps = -(-rows // len(df))
    idx = np.tile(np.arange(len(df)), reps)[:rows]

    def prep(cols: list[str]) -> np.ndarray:
        x = df[cols].to_numpy(dtype=np.float64, copy=True)
        for j, c in enumerate(cols):
            if c in MONEY:
                x[:, j] = np.sign(x[:, j]) * np.log1p(np.abs(x[:, j]))
        sd = x.std(axis=0)
        return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0))[idx]

    return prep(bank_cols), df[label].to_numpy()[idx].astype(np.int8), prep(centre_cols), source


# -- relays -------------------------------------------------------------------------------------
def _make(role: str, data: dict, cfg: HeteroLRConfig, state: bytes | None):
    if role == "bank":
        if state is None:
            return BankLR("bank", "centre", data["Xb"], data["y"], cfg)
        return BankLR.from_state(state, data["Xb"], data["y"])
    if state is None:
        return CentreLR("centre", "bank", data["Xc"], cfg)
    return CentreLR.from_state(state, data["Xc"])


class _LocalNode:
    """A party living in this process, reloaded from its state bytes every step."""

    def __init__(self, role: str, data: dict, cfg: HeteroLRConfig):
        self.role, self.data, self.cfg = role, data, cfg
        self.state = _make(role, data, cfg, None).to_state()
        self.cpu = 0.0

    def call(self, inbox: list[Envelope] | None) -> tuple[list[Envelope], bool]:
        c0 = time.process_time()
        party = _make(self.role, self.data, self.cfg, self.state)
        out = party.start() if inbox is None else party.receive(inbox)
        self.state = party.to_state()
        self.cpu += time.process_time() - c0
        return out, party.finished

    def stream(self, invite: dict, inbox: list[Envelope]) -> tuple[int, bool]:
        """One streamed step (parties.common.exchange) against the coordinator's hub: the party
        stays in memory from ``inbox`` to the next epoch boundary or its end; returns the
        exchanges it posted and whether it finished."""
        from parties.common.exchange import ExchangeClient, StreamInvite, stream_party

        c0 = time.process_time()
        party = _make(self.role, self.data, self.cfg, self.state)
        client = ExchangeClient(StreamInvite.from_params(invite), self.role)
        posted = stream_party(
            client,
            "hetero_lr/bench",
            party,
            inbox,
            seal=lambda sub, out: out,
            accept=lambda sub, got: [e.plain() for e in got],
            pause=lambda: party.resume_point() is not None,
        )
        self.state = party.to_state()
        self.cpu += time.process_time() - c0
        return posted, party.finished


def _node_main(conn, role: str, data: dict, cfg_dict: dict, workers: int) -> None:
    os.environ["FEDCREDIT_PAILLIER_WORKERS"] = str(workers)
    node = _LocalNode(role, data, HeteroLRConfig(**cfg_dict))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        try:
            if isinstance(msg, tuple) and msg[0] == "stream":
                posted, fin = node.stream(msg[1], msg[2])
                conn.send(("ok", posted, fin, node.cpu))
                continue
            out, fin = node.call(msg if msg != "start" else None)
            conn.send(("ok", out, fin, node.cpu))
        except Exception as exc:  # noqa: BLE001 - report, do not hang the relay
            conn.send(("error", f"{type(exc).__name__}: {exc}", False, node.cpu))


class _ProcessNode:
    """A party in its own process (one core per party, as in a deployment)."""

    def __init__(self, role: str, data: dict, cfg: HeteroLRConfig, workers: int):
        ctx = mp.get_context("fork")
        # loaded once, read-only, before the fork (the node shares these pages, no copy of its own):
        # each step's restore then reuses the party's checked arrays and data digest
        data = {k: frozen(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_node_main, args=(child, role, data, cfg.to_dict(), workers), daemon=True)
        self.proc.start()
        self.cpu = 0.0

    def send(self, inbox: list[Envelope] | None) -> None:
        self.conn.send("start" if inbox is None else inbox)

    def send_stream(self, invite: dict, inbox: list[Envelope]) -> None:
        self.conn.send(("stream", invite, inbox))

    def result(self) -> tuple[list[Envelope], bool]:
        status, out, fin, cpu = self.conn.recv()
        self.cpu = cpu
        if status != "ok":
            raise ProtocolError(out)
        return out, fin

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


def _route(out: list[Envelope]) -> dict[str, list[Envelope]]:
    boxes: dict[str, list[Envelope]] = {}
    for env in out:
        boxes.setdefault(env.recipient, []).append(env)
    return boxes


def expected_relay_steps(batches: int) -> int:
    """Relay steps of one epoch after key set-up, for the progress bar's ETA only: three per batch
    (docs/protocols/hetero-lr.md section 3) plus the exchange around the first and last batch."""
    return 3 * batches + 4


def run_sequential(data: dict, cfg: HeteroLRConfig, tick: Callable[[], None] = lambda: None) -> dict:
    nodes = {r: _LocalNode(r, data, cfg) for r in ("bank", "centre")}
    out = [e for n in nodes.values() for e in n.call(None)[0]]  # key generation: setup, not timed
    setup_cpu = {r: n.cpu for r, n in nodes.items()}
    t0 = time.perf_counter()
    steps, step_max = 0, 0.0
    nbytes = 0
    while out:
        steps += 1
        nbytes += sum(e.size for e in out)
        nxt, times = [], {}
        for role, inbox in _route(out).items():
            c0 = nodes[role].cpu
            res, _ = nodes[role].call(inbox)
            times[role] = nodes[role].cpu - c0
            nxt.extend(res)
        step_max += max(times.values())
        out = nxt
        tick()
    wall = time.perf_counter() - t0
    final = {r: _make(r, data, cfg, n.state) for r, n in nodes.items()}
    if not all(p.finished for p in final.values()):
        raise ProtocolError("sequential run did not finish")
    return {
        "wall": wall,
        "steps": steps,
        "bytes": nbytes,
        "cpu": {r: nodes[r].cpu - setup_cpu[r] for r in nodes},
        "parallel_model": step_max,
        "weights": {r: p.weights for r, p in final.items()},
    }


def run_parallel(data: dict, cfg: HeteroLRConfig, workers: int, tick: Callable[[], None] = lambda: None) -> dict:
    nodes = {r: _ProcessNode(r, data, cfg, workers) for r in ("bank", "centre")}
    try:
        for n in nodes.values():
            n.send(None)
        out = [e for n in nodes.values() for e in n.result()[0]]
        setup_cpu = {r: n.cpu for r, n in nodes.items()}
        t0 = time.perf_counter()
        steps, step_max = 0, 0.0
        finished = {}
        while out:
            steps += 1
            boxes = _route(out)
            before = {r: n.cpu for r, n in nodes.items()}
            for role, inbox in boxes.items():
                nodes[role].send(inbox)
            out = []
            for role in boxes:
                res, finished[role] = nodes[role].result()
                out.extend(res)
            step_max += max(nodes[r].cpu - before[r] for r in boxes)
            tick()
        wall = time.perf_counter() - t0
        if not all(finished.get(r) for r in nodes):
            raise ProtocolError("parallel run did not finish")
        return {
            "wall": wall,
            "steps": steps,
            "cpu": {r: nodes[r].cpu - setup_cpu[r] for r in nodes},
            "parallel_model": step_max,
        }
    finally:
        for n in nodes.values():
            n.close()


# -- the same protocol on phe --------------------------------------------------------------------
def phe_epoch_estimate(data: dict, cfg: HeteroLRConfig, m: int) -> dict:
    """Time the protocol's per-row work on ``m`` rows with phe's EncryptedNumber API, and its
    per-batch fixed work (mask encryption + decryption of both gradients), then scale."""
    from phe import paillier

    rng = np.random.default_rng(1)
    pk_b, sk_b = paillier.generate_paillier_keypair(n_length=cfg.key_bits)
    pk_c, sk_c = paillier.generate_paillier_keypair(n_length=cfg.key_bits)
    rows = rng.choice(len(data["y"]), size=m, replace=False)
    Xb = np.hstack([data["Xb"][rows], np.ones((m, 1))])
    Xc = data["Xc"][rows]
    y = np.where(data["y"][rows] == 1, 1.0, -1.0)
    wb, wc = rng.normal(scale=0.1, size=Xb.shape[1]), rng.normal(scale=0.1, size=Xc.shape[1])
    ub, uc = Xb @ wb, Xc @ wc
    d_bank = 0.25 * ub - 0.5 * y
    t0 = time.process_time()
    w0 = time.perf_counter()
    # phase A: each party encrypts its batch partials
    enc_db = [pk_b.encrypt(float(v)) for v in d_bank]
    enc_c = [pk_c.encrypt(float(v)) for v in 0.25 * uc]
    # phase B, centre: Enc_b(d) = Enc_b(d_bank) + 0.25 u_c; X_c^T d and the loss column u_c
    enc_d = [e + float(c) for e, c in zip(enc_db, 0.25 * uc)]
    g_c = [sum(e * float(x) for e, x in zip(enc_d, Xc[:, j])) for j in range(Xc.shape[1])]
    loss = sum(e * float(u) for e, u in zip(enc_db, uc))
    # phase B, bank: Enc_c(d) = Enc_c(0.25 u_c) + d_bank; X_b^T d
    enc_d2 = [e + float(v) for e, v in zip(enc_c, d_bank)]
    g_b = [sum(e * float(x) for e, x in zip(enc_d2, Xb[:, j])) for j in range(Xb.shape[1])]
    per_row_cpu, per_row_wall = (time.process_time() - t0) / m, (time.perf_counter() - w0) / m
    # per-batch fixed work: masks (fresh encryptions) and the masked decryptions, both parties
    t1 = time.process_time()
    masks_c = [pk_b.encrypt(float(r)) for r in rng.normal(size=len(g_c))]
    masks_b = [pk_c.encrypt(float(r)) for r in rng.normal(size=len(g_b))]
    plain_c = [sk_b.decrypt(g + r) for g, r in zip(g_c, masks_c)] + [sk_b.decrypt(loss)]
    plain_b = [sk_c.decrypt(g + r) for g, r in zip(g_b, masks_b)]
    fixed_cpu = time.process_time() - t1
    # sanity: phe computed the same aggregates
    want_c = Xc.T @ (d_bank + 0.25 * uc)
    got_c = np.array(plain_c[:-1]) - np.array([sk_b.decrypt(r) for r in masks_c])
    if not np.allclose(got_c, want_c, rtol=1e-6, atol=1e-6) or len(plain_b) != Xb.shape[1]:
        raise SystemExit("CORRECTNESS FAILURE: phe reference protocol computed a wrong gradient")
    n, nb = len(data["y"]), batches_per_epoch(len(data["y"]), cfg.batch_size)
    return {
        "rows_timed": m,
        "per_row_cpu_ms": per_row_cpu * 1e3,
        "per_row_wall_ms": per_row_wall * 1e3,
        "per_batch_fixed_cpu": fixed_cpu,
        "epoch_cpu_est": per_row_cpu * n + fixed_cpu * nb,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--quick", action="store_true", help="8192 rows, 48 phe rows, no sequential run")
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--phe-rows", type=int, default=96)
    ap.add_argument("--workers", type=int, default=1, help="Paillier worker processes per party (default 1)")
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument(
        "--frac-bits-x",
        type=int,
        default=None,
        help="fixed-point fraction bits of the features (default: HeteroLRConfig's)",
    )
    add_progress_flag(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    phases = 3 if args.quick or args.skip_sequential else 4
    with BenchProgress("hetero_lr", phases=phases, no_progress=args.no_progress) as prog:
        return _bench(args, prog)


def _bench(args: argparse.Namespace, prog: BenchProgress) -> dict:
    prog.phase("loading data")
    os.environ["FEDCREDIT_PAILLIER_WORKERS"] = str(args.workers)
    rows, phe_rows = (8192, 48) if args.quick else (args.rows, args.phe_rows)
    Xb, y, Xc, source = load_data(rows)
    data = {"Xb": Xb, "y": y, "Xc": Xc}
    extra = {} if args.frac_bits_x is None else {"frac_bits_x": args.frac_bits_x}
    cfg = HeteroLRConfig(
        epochs=1,
        batch_size=args.batch_size,
        key_bits=args.key_bits,
        insecure_test_key=args.key_bits < 2048,
        early_stopping_patience=0,
        **extra,
    )
    nb = batches_per_epoch(rows, cfg.batch_size)
    min_batch = min(len(b) for b in batch_schedule(rows, cfg.batch_size, cfg.seed, 0))
    print(
        f"hetero-LR epoch: {rows} rows ({source}), bank {Xb.shape[1]}+1 / centre {Xc.shape[1]} features, "
        f"{nb} batches of ~{len(batch_schedule(rows, cfg.batch_size, cfg.seed, 0)[0])}, "
        f"{cfg.key_bits}-bit keys, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}"
    )

    prog.phase(f"epoch, 2 processes ({nb} batches)")
    with prog.steps("relay step", total=expected_relay_steps(nb)) as tick:
        par = run_parallel(data, cfg, args.workers, tick)
    print(
        f"parallel (2 processes): {par['wall']:.2f} s wall, {par['steps']} relay steps, "
        f"cpu bank {par['cpu']['bank']:.2f} s, centre {par['cpu']['centre']:.2f} s, "
        f"sum over steps of the slower party's cpu {par['parallel_model']:.2f} s"
    )
    seq = None
    if not (args.quick or args.skip_sequential):
        prog.phase(f"epoch, 1 process ({nb} batches)")
        with prog.steps("relay step", total=par["steps"]) as tick:
            seq = run_sequential(data, cfg, tick)
        print(
            f"sequential (1 process): {seq['wall']:.2f} s wall, cpu bank {seq['cpu']['bank']:.2f} s, "
            f"centre {seq['cpu']['centre']:.2f} s, sum over steps of the slower party {seq['parallel_model']:.2f} s, "
            f"{seq['bytes'] / 1e6:.1f} MB relayed"
        )
    prog.phase(f"phe estimate on {phe_rows} rows")
    phe = phe_epoch_estimate(data, cfg, phe_rows)
    print(
        f"phe: {phe['per_row_cpu_ms']:.1f} ms cpu per row (both parties, {phe_rows} rows timed), "
        f"{phe['per_batch_fixed_cpu']:.2f} s per batch fixed -> {phe['epoch_cpu_est']:.0f} s per epoch (est.)"
    )
    cpu_total = par["cpu"]["bank"] + par["cpu"]["centre"]
    result = {
        "bench": "hetero_lr",
        "rows": rows,
        "key_bits": cfg.key_bits,
        "batch_size": cfg.batch_size,
        "batches": nb,
        "bank_features": Xb.shape[1] + 1,
        "centre_features": Xc.shape[1],
        "epoch_seconds": round(par["wall"], 3),
        "epoch_seconds_sequential": None if seq is None else round(seq["wall"], 3),
        "epoch_seconds_cpu_model": round(par["parallel_model"], 3),
        "epoch_cpu_seconds": round(cpu_total, 3),
        "cpu_seconds": {"bank": round(par["cpu"]["bank"], 3), "centre": round(par["cpu"]["centre"], 3)},
        "phe_epoch_seconds_est": round(phe["epoch_cpu_est"], 1),
        "phe_rows_timed": phe_rows,
        "ratio": round(phe["epoch_cpu_est"] / cpu_total, 1),
        "ratio_vs_parallel_wall": round(phe["epoch_cpu_est"] / par["wall"], 1),
        "relay_steps": par["steps"],
        "load_avg": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "data": source,
        # the #14 defences are always on (no switch): uniform masks mod n, windowed returns with
        # range checks on every gradient entry, high-masked loss aggregates (threat-model.md)
        "defences": {"mask": "uniform mod n", "window_bits": window_bits(min_batch, cfg), "check_bits": CHECK_BITS},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
