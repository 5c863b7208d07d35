"""`fedcredit consent keygen|issue|import|list|revoke|demo`: manage consent tokens (docs/consent.md).

* ``keygen``  — an issuer's Ed25519 key: private JWK (owner-only) and public JWK (``.pub.jwk``);
* ``issue``   — sign a token for one enterprise and append it to a token file;
* ``import``  — verify a token file once into a verified-token store (HMAC-bound, node-local);
* ``list``    — what a token file holds, each token's verdict and status on a day;
* ``revoke``  — add token ids to the issuer's signed revocation list and bump its version.
* ``demo``    — deliver a demo scenario's tokens into its centre's store ahead of runs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fedcredit.cli.output import fail, plain

app = typer.Typer(no_args_is_help=True)
console = Console()


def _day(value: str, what: str) -> int:
    from fedcredit.consent.demo import epoch

    try:
        return epoch(dt.date.fromisoformat(value))
    except ValueError:
        raise fail(console, f"{what} {value!r} is not a date YYYY-MM-DD") from None


@app.command()
def keygen(
    name: str = typer.Argument(..., help="The issuer's name (its JWK kid and the tokens' iss)."),
    out: Path = typer.Option(..., "--out", help="Private JWK to write; the public one goes to <out>.pub.jwk."),
) -> None:
    """Create an issuer key pair."""
    import json

    from fedcredit.consent.tokens import Issuer

    if out.exists():
        raise fail(console, f"{out} exists; refusing to overwrite an issuer key")
    issuer = Issuer.generate(name)
    issuer.save(out)
    pub = out.with_name(out.name.removesuffix(".jwk") + ".pub.jwk")
    pub.write_text(json.dumps(issuer.public.to_jwk(), indent=2))
    console.print(f"issuer {plain(name)}: private key {plain(out)}, public key {plain(pub)}")
    console.print(f"fingerprint {issuer.public.fingerprint}")


@app.command()
def issue(
    issuer_key: Path = typer.Option(..., "--issuer-key", help="The issuer's private JWK."),
    subject: str = typer.Option(..., "--sub", help="The enterprise's USCC."),
    audience: list[str] = typer.Option(..., "--aud", help="A party the consent names (bank and centre: repeat)."),
    purpose: str = typer.Option("credit_risk_modelling", "--purpose"),
    categories: list[str] = typer.Option(..., "--cat", help="A data category it covers (repeat)."),
    not_before: str = typer.Option(..., "--nbf", help="First valid day, YYYY-MM-DD."),
    expires: str = typer.Option(..., "--exp", help="Day it stops being valid, YYYY-MM-DD."),
    token_id: str | None = typer.Option(None, "--jti", help="Token id (default: random)."),
    out: Path = typer.Option(..., "--out", help="Token file to append to (one JWT per line)."),
) -> None:
    """Sign one consent token and append it to a token file."""
    from fedcredit.consent.tokens import Issuer, TokenError

    try:
        token = Issuer.load(issuer_key).issue(
            subject, audience, purpose, categories, _day(not_before, "--nbf"), _day(expires, "--exp"), token_id=token_id
        )
    except (TokenError, ValueError) as exc:
        raise fail(console, exc) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as fh:
        fh.write(token + "\n")
    console.print(f"appended a token for {plain(subject)} to {plain(out)}")


@app.command(name="import")
def import_(
    tokens: Path = typer.Argument(..., help="Token file (one JWT per line)."),
    issuers: list[Path] = typer.Option(..., "--issuer", help="A trusted issuer's public JWK (repeat)."),
    store: Path = typer.Option(..., "--store", help="Verified-token store to add to (its key: <store>.key)."),
) -> None:
    """Verify every token's signature once and add the good ones to a verified-token store."""
    from fedcredit.consent.check import StoreError, VerifiedStore, store_key
    from fedcredit.consent.tokens import TokenError, load_issuer_keys, read_tokens

    try:
        keys = load_issuer_keys(issuers)
        key = store_key(store.with_name(store.name + ".key"))
        vs = VerifiedStore.load(store, key)
        added, failed = vs.verify_and_add(read_tokens(tokens), keys)
        vs.save(store, key)
    except (TokenError, StoreError) as exc:
        raise fail(console, exc) from None
    console.print(f"{added} token(s) verified and added; store holds {len(vs)}")
    if failed:
        console.print(f"[yellow]refused:[/] {plain(dict(sorted(failed.items())))}")


@app.command(name="list")
def list_(
    tokens: Path = typer.Argument(..., help="Token file (one JWT per line)."),
    issuers: list[Path] = typer.Option([], "--issuer", help="Trusted issuer public JWK(s): verify signatures."),
    revocations: list[Path] = typer.Option([], "--revocations", help="Signed revocation list(s)."),
    at: str | None = typer.Option(None, "--at", help="Day to evaluate validity on (default today)."),
) -> None:
    """Show the tokens of a file with each one's verdict (signature, window, revocation)."""
    from fedcredit.consent.tokens import (
        RevocationList,
        TokenError,
        TokenRejected,
        load_issuer_keys,
        read_tokens,
        verify_token,
    )

    when = _day(at or dt.date.today().isoformat(), "--at")
    try:
        keys = load_issuer_keys(issuers)
        revoked = set().union(*(RevocationList.load(p, keys).revoked for p in revocations)) if revocations else set()
        items = read_tokens(tokens)
    except TokenError as exc:
        raise fail(console, exc) from None
    table = Table(title=plain(f"{tokens.name}: {len(items)} token(s)"))
    for col in ("subject", "issuer", "purpose", "categories", "valid", "jti", "status"):
        table.add_column(col)
    status_counts: Counter[str] = Counter()
    for t in items:
        try:
            g = verify_token(t, keys) if keys else None
        except TokenRejected as exc:
            status_counts[exc.reason] += 1
            table.add_row("?", "?", "?", "?", "?", "?", f"[red]{exc.reason}[/]")
            continue
        if g is None:
            import jwt

            c = jwt.decode(t, options={"verify_signature": False})
            table.add_row(
                str(c.get("sub")),
                str(c.get("iss")),
                str(c.get("purpose")),
                ",".join(c.get("cats", [])),
                "",
                str(c.get("jti")),
                "unverified",
            )
            status_counts["unverified"] += 1
            continue
        status = (
            "revoked"
            if g.jti in revoked
            else "not_yet_valid"
            if g.nbf > when
            else "expired"
            if g.exp <= when
            else "valid"
        )
        status_counts[status] += 1
        window = f"{dt.datetime.fromtimestamp(g.nbf, dt.UTC).date()}..{dt.datetime.fromtimestamp(g.exp, dt.UTC).date()}"
        table.add_row(g.sub, g.iss, g.purpose, ",".join(g.cats), window, g.jti, status)
    if len(items) <= 200:
        console.print(table)
    console.print(plain(dict(sorted(status_counts.items()))))


@app.command()
def revoke(
    issuer_key: Path = typer.Option(..., "--issuer-key", help="The issuer's private JWK."),
    token_ids: list[str] = typer.Argument(..., help="Token id(s) (jti) to revoke."),
    revocations: Path = typer.Option(..., "--list", help="The issuer's revocation list (created if missing)."),
) -> None:
    """Add token ids to the issuer's signed revocation list, as a new version."""
    import time

    from fedcredit.consent.tokens import Issuer, RevocationList, TokenError

    try:
        issuer = Issuer.load(issuer_key)
        keys = {issuer.name: issuer.public}
        old = RevocationList.load(revocations, keys) if revocations.exists() else None
        ids = set(token_ids) | (set(old.revoked) if old else set())
        version = (old.version if old else 0) + 1
        revocations.parent.mkdir(parents=True, exist_ok=True)
        revocations.write_text(issuer.revocation_list(version, ids, int(time.time())) + "\n")
    except TokenError as exc:
        raise fail(console, exc) from None
    console.print(f"revocation list {plain(revocations)}: version {version}, {len(ids)} revoked token id(s)")


@app.command(name="demo")
def demo(
    scenario_path: Path = typer.Argument(
        ..., help='Scenario with [consent] mode = "demo" (e.g. configs/vertical-lr.toml).'
    ),
) -> None:
    """Deliver a demo scenario's tokens to its centre ahead of runs, as an identity service would.

    Issues (or reuses) each bank's demo tokens and verifies them once into the centre's store,
    like ``import`` does for real tokens; ``make demo`` runs this before the run, so the run's
    consent phase re-checks claims, dates and revocations of tokens already verified."""
    from fedcredit import config
    from fedcredit.cli.simulate_cmd import ensure_synthetic_data
    from parties.vertical.consent import ConsentSetupError, deliver_demo_tokens

    try:
        scenario = config.load(scenario_path)
        ensure_synthetic_data(scenario)
        done = deliver_demo_tokens(scenario)
    except (config.ConfigError, ConsentSetupError, OSError) as exc:
        raise fail(console, exc) from None
    for d in done:
        refused = f", refused {plain(d.refused)}" if d.refused else ""
        console.print(
            f"{plain(d.bank)} -> {plain(d.centre)}: {d.tokens} demo tokens (issued or reused in {d.issue_s:.2f} s), "
            f"{d.added} newly verified into {plain(d.store)} in {d.verify_s:.2f} s{refused}"
        )
