"""Unbalanced ECDH-PSI: a big centre prepared once per key period, small banks per run.

Modules: ``scalars`` (invertible X25519 blinding), ``messages``, ``centre``
(:class:`PreparedCentre`, :class:`CentreRun`), ``bank`` (:class:`BankCache`, :class:`BankRun`)
and ``local`` (:func:`run_unbalanced_local`). Protocol and privacy: ``docs/protocols/psi.md``.
"""

from protocols.psi.unbalanced.bank import BankCache, BankRun
from protocols.psi.unbalanced.centre import DEFAULT_QUERY_BUDGET, CentreRun, PreparedCentre
from protocols.psi.unbalanced.local import UnbalancedTimings, run_unbalanced_local
from protocols.psi.unbalanced.messages import PROTOCOL, UbCache, UbEvaluated, UbMatches, UbQuery

__all__ = [
    "BankCache",
    "BankRun",
    "CentreRun",
    "DEFAULT_QUERY_BUDGET",
    "PROTOCOL",
    "PreparedCentre",
    "UbCache",
    "UbEvaluated",
    "UbMatches",
    "UbQuery",
    "UnbalancedTimings",
    "run_unbalanced_local",
]
