"""fedcredit: privacy-preserving joint credit-risk modelling between a public credit centre and banks.

Layers (imports point down only): ``simulations`` -> ``parties`` (Flower apps) -> ``fedcredit``
(data, models, metrics, ledger, consent, config, cli) -> ``protocols`` (pure crypto, no Flower).

For researchers: ``fedcredit.simulate(scenario, out=...)`` and ``fedcredit.Scenario`` (see
:mod:`fedcredit.api` and docs/api.md).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["RunResult", "Scenario", "__version__", "simulate"]


def __getattr__(name: str) -> Any:
    # The Python API (fedcredit.simulate, fedcredit.Scenario, fedcredit.RunResult), imported on
    # first use: a party importing fedcredit.metrics must not load the API (which starts runs
    # with the Flower apps). By module name, so the import-linter sees the API's own imports
    # (fedcredit.api -> parties) and not a false "every fedcredit module -> parties" path.
    if name in ("RunResult", "Scenario", "simulate"):
        import importlib

        return getattr(importlib.import_module("fedcredit.api"), name)
    raise AttributeError(f"module 'fedcredit' has no attribute {name!r}")
