"""`fedcredit ledger verify|show|export|consent|demo`: the auditor's tools.

Exit codes of ``verify``: 0 all checks hold; 1 tampering or an egress mismatch was found;
2 bad input (missing or non-ledger file, unreadable key); 3 the ledger is intact but has no
``run_end`` (truncated, e.g. by a crash) and ``--allow-incomplete`` was not given.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fedcredit.cli.output import fail, plain

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Verify, inspect and export compliance ledgers and egress logs."
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    return fail(_err(), msg, code, style="bold red")


def _parse_node_keys(items: list[str]) -> dict:
    from fedcredit.ledger import LedgerError, load_public_key

    keys = {}
    for item in items:
        node, sep, pem = item.partition("=")
        if not sep or not node or not pem:
            raise _fail(f"--node-pubkey expects NODE=PEM_FILE, got {item!r}")
        try:
            keys[node] = load_public_key(pem)
        except LedgerError as exc:
            raise _fail(f"node {node!r}: {exc}") from None
    return keys


@app.command()
def verify(
    path: Path = typer.Argument(
        ...,
        help="Run ledger (SQLite) to verify, or a run directory (ledger, coordinator key, every node log and "
        "the tree heads the nodes co-signed; fails if any is missing).",
    ),
    egress: list[Path] = typer.Option([], "--egress", "-e", help="A data node's egress log (repeat per node)."),
    pubkey: Path | None = typer.Option(None, "--pubkey", help="Coordinator's published Ed25519 public key (PEM)."),
    node_pubkey: list[str] = typer.Option(
        [],
        "--node-pubkey",
        help="NODE=PEM: a node's key from its operator (default: the egress key the ledger's run_start lists).",
    ),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Accept a ledger without run_end if everything present verifies."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check chain, hashes, signatures and egress cross-checks; exit 0 only if all hold."""
    from fedcredit.ledger import LedgerError, load_public_key
    from fedcredit.ledger import verify as run_verify

    key = None
    if pubkey is not None:
        try:
            key = load_public_key(pubkey)
        except LedgerError as exc:
            raise _fail(str(exc)) from None
    if path.is_dir():  # a run directory: ledger, node logs, operator keys and co-signed heads, all required
        from fedcredit.ledger.rundir import verify_run_dir

        if egress:
            raise _fail("--egress is for a ledger file; a run directory's node logs are found under nodes/")
        rep = verify_run_dir(path, public_key=key, node_keys=_parse_node_keys(node_pubkey))
    else:
        rep = run_verify(path, public_key=key, egress=egress, egress_public_keys=_parse_node_keys(node_pubkey))
    if not rep.readable:
        raise _fail(rep.errors[0])
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(rep), indent=2, sort_keys=True))
    else:
        _print_report(rep)
    if rep.ok:
        return
    if rep.intact and not rep.complete:
        if allow_incomplete:
            _out().print("[yellow]accepted as incomplete (--allow-incomplete)[/]")
            return
        raise typer.Exit(EXIT_INCOMPLETE)
    raise typer.Exit(EXIT_FAILED)


def _print_report(rep) -> None:
    out = _out()
    out.print(
        f"[bold]ledger[/] {plain(rep.path)}  run [cyan]{plain(rep.run_id)}[/]  {rep.records} records  "
        f"key: {plain(rep.key_source)}" + (f" ({rep.coordinator_pubkey[:16]}...)" if rep.coordinator_pubkey else "")
    )
    if rep.head_hash:
        out.print(f"head hash {rep.head_hash}")
    if rep.heads_checked:
        out.print(f"{rep.heads_checked} tree heads co-signed by every party match the ledger")
    for chk in rep.egress:
        out.print(
            f"node log [cyan]{plain(chk.node)}[/]: {chk.records} records, {chk.messages_in_egress} sent, "
            f"{chk.messages_in_ledger} in ledger, {chk.matched} matched, {chk.received} received, "
            f"{chk.refused} refused  ({plain(chk.path)})"
        )
    for w in rep.warnings:
        out.print(f"[yellow]warning:[/] {plain(w)}")
    for e in rep.errors:
        out.print(f"[red]error:[/] {plain(e)}")
    if rep.suppressed_errors:
        out.print(f"[red]... {rep.suppressed_errors} more error(s) not shown[/]")
    style = "bold green" if rep.ok else ("bold yellow" if rep.intact else "bold red")
    out.print(f"[{style}]{plain(rep.summary())}[/]")


def _read(path: Path):
    from fedcredit.ledger import LedgerFileError, read_records

    try:
        return read_records(path)
    except LedgerFileError as exc:
        raise _fail(str(exc)) from None


def _summarise(rec) -> str:
    try:
        payload = json.loads(rec.payload_text)
    except (TypeError, ValueError):
        return f"[unparseable payload] {str(rec.payload_text)[:60]}"
    if not isinstance(payload, dict):
        return str(payload)[:80]
    if rec.kind == "step" and isinstance(payload.get("messages"), list):
        msgs = payload["messages"]
        size = sum(m.get("size", 0) for m in msgs if isinstance(m, dict) and isinstance(m.get("size"), int))
        extra = {k: v for k, v in payload.items() if k not in ("messages",)}
        return f"{len(msgs)} msgs, {size} bytes; " + json.dumps(extra, sort_keys=True, ensure_ascii=False)[:100]
    if rec.kind == "run_start":
        parties = payload.get("parties", {})
        keep = {k: payload[k] for k in ("mode", "purpose", "code_version") if k in payload}
        return f"parties {sorted(parties) if isinstance(parties, dict) else parties}; " + json.dumps(keep)[:100]
    return json.dumps(payload, sort_keys=True, ensure_ascii=False)[:140]


@app.command()
def show(
    path: Path = typer.Argument(..., help="Ledger or egress log."),
    kind: str | None = typer.Option(None, "--kind", help="Only records of this kind."),
    limit: int = typer.Option(0, "--limit", help="Show at most this many records (0 = all)."),
) -> None:
    """Print the records as a table (does not verify: use `fedcredit ledger verify`)."""
    recs = _read(path)
    rows = [r for r in recs if kind is None or r.kind == kind]
    if limit > 0:
        rows = rows[:limit]
    first = recs[0] if recs else None
    title = (
        f"{first.log} {path.name}: run {first.run_id}, writer {first.writer}, {len(recs)} records"
        if first
        else f"{path.name}: no records"
    )
    table = Table(title=plain(title), show_lines=False)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("summary", overflow="fold", ratio=1)
    table.add_column("hash", no_wrap=True)
    for r in rows:
        cells = (r.seq, str(r.ts)[:19].replace("T", " "), r.kind, _summarise(r), str(r.hash)[:10])
        table.add_row(*(plain(c) for c in cells))
    out = _out()
    out.print(table)
    counts = Counter(str(r.kind) for r in recs)
    out.print("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())), markup=False)
    consent_modes = {
        str(r.payload.get("mode")) for r in recs if r.kind == "consent_check" and isinstance(r.payload, dict)
    }
    if "demo" in consent_modes:
        out.print(
            "[bold yellow]CONSENT DEMO MODE:[/] tokens were issued by the public demo issuer; no real authorisation"
        )
    out.print("[dim]not verified here: run `fedcredit ledger verify` for chain/signature checks[/]")


EXPORT_COLUMNS = ("log", "seq", "run_id", "kind", "ts", "writer", "prev_hash", "payload_text", "hash", "sig")


@app.command()
def export(
    path: Path = typer.Argument(..., help="Ledger or egress log."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: stdout)."),
) -> None:
    """Export every record exactly as stored (payload_text is what the hash covers)."""
    if fmt not in ("jsonl", "csv"):
        raise _fail(f"--format must be jsonl or csv, not {fmt!r}")
    recs = _read(path)
    fh = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if fmt == "jsonl":
            for r in recs:
                row = {c: getattr(r, c) for c in EXPORT_COLUMNS}
                try:
                    row["payload"] = json.loads(r.payload_text)
                except (TypeError, ValueError):
                    row["payload"] = None
                fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            w = csv.writer(fh)
            w.writerow(EXPORT_COLUMNS)
            for r in recs:
                w.writerow([getattr(r, c) for c in EXPORT_COLUMNS])
    finally:
        if out:
            fh.close()
    if out:
        _err().print(f"wrote {len(recs)} records to {out}", markup=False)


@app.command()
def consent(
    csv_path: Path = typer.Argument(..., help="Consent registry CSV."),
    bank: str | None = typer.Option(None, "--bank", help="Only this bank's consents."),
    at: str | None = typer.Option(None, "--at", help="Status on this date YYYY-MM-DD (default: today)."),
) -> None:
    """Validate a consent CSV and count consents by bank, purpose and status on a date."""
    from fedcredit.consent import ConsentError, ConsentRegistry

    try:
        day = dt.date.fromisoformat(at) if at else dt.date.today()
    except ValueError:
        raise _fail(f"--at {at!r} is not a date YYYY-MM-DD") from None
    try:
        reg = ConsentRegistry.from_csv(csv_path)
    except ConsentError as exc:
        raise _fail(str(exc)) from None
    counts: Counter = Counter()
    for rec in reg:
        if bank is None or rec.bank == bank:
            counts[(rec.bank, rec.purpose, rec.refusal(day) or "valid")] += 1
    table = Table(title=plain(f"{csv_path.name}: {len(reg)} consent records, status on {day}"))
    for col in ("bank", "purpose", "status", "records"):
        table.add_column(col)
    for (b, p, s), n in sorted(counts.items()):
        table.add_row(plain(b), plain(p), plain(s), str(n))
    _out().print(table)


@app.command()
def demo(
    out: Path = typer.Argument(..., help="Directory for ledger.db, egress-*.db and coordinator.pub."),
    steps: int = typer.Option(3, "--steps", min=1),
) -> None:
    """Write a small signed demo run to practise verification and tamper detection on."""
    from fedcredit.ledger import save_public_key
    from fedcredit.ledger.demo import write_demo_run

    if (out / "ledger.db").exists():
        raise _fail(f"{out / 'ledger.db'} exists; choose an empty directory")
    run = write_demo_run(out, steps=steps)
    save_public_key(run.coordinator_key, out / "coordinator.pub")
    _out().print(
        f"wrote {run.ledger_path} and {', '.join(str(p) for p in run.egress_paths.values())}; "
        f"coordinator key {out / 'coordinator.pub'}",
        markup=False,
    )
