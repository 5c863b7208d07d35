"""Entry point of the ``fedcredit`` console script.

Each command group lives in its own module and registers itself here, so the modules stay small
and import their heavy dependencies (torch, Flower) only when their command runs.
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="fedcredit",
    help="Privacy-preserving joint credit-risk modelling: credit centre + banks on Flower.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    # Imported here (not at module top) so `fedcredit --help` stays fast.
    from fedcredit.cli import data_cmd

    app.add_typer(data_cmd.app, name="data", help="Generate and validate party data.")
    from fedcredit.cli import baseline_cmd

    app.command(name="baseline")(baseline_cmd.baseline)
    from fedcredit.cli import config_cmd

    app.add_typer(config_cmd.app, name="config", help="Inspect a scenario's settings (every key, default, constraint).")
    from fedcredit.cli import simulate_cmd

    app.command(name="simulate")(simulate_cmd.simulate)
    from fedcredit.cli import report_cmd

    app.command(name="report")(report_cmd.report)
    from fedcredit.cli import ledger_cmd

    app.add_typer(ledger_cmd.app, name="ledger", help="Verify, show and export compliance ledgers.")

    from fedcredit.cli import consent_cmd

    app.add_typer(consent_cmd.app, name="consent", help="Issue, import, list and revoke consent tokens.")

    from fedcredit.cli import audit_cmd

    app.command(name="audit")(audit_cmd.audit)

    from fedcredit.cli import monitor_cmd

    app.add_typer(monitor_cmd.app, name="monitor", help="Score PSI and per-column CSI, development vs recent.")
    from fedcredit.cli import deploy_cmd

    deploy_cmd.register(app)
    from fedcredit.cli import node_cmd

    node_cmd.register(app)


_register()


if __name__ == "__main__":  # pragma: no cover
    app()
