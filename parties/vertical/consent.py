"""The bank's consent check: which enterprises' data may be used for this run's purpose.

Used before PSI (only consented enterprises enter the intersection) and before joint inference
(only consented applicants are looked up at the centre). Counts go to the ledger; ids stay on
the bank's node.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fedcredit.config.sections import ConsentSettings
from fedcredit.consent import ConsentFilterResult, ConsentRecord, ConsentRegistry
from parties.common.node import NodeRuntime


def consent_filter(node: NodeRuntime, ids: list[str]) -> ConsentFilterResult:
    """The bank's consent registry for this run's purpose, applied to ``ids``.

    ``[consent] registry = "consents.csv"`` (or node_config ``consent``) loads real authorisations.
    Bundled and synthetic data have none, so by default every enterprise is granted; the
    ``demo_revoked`` / ``demo_expired`` fractions then withdraw a seeded share, to exercise the
    refusal path end to end.
    """
    section = node.scenario.settings(ConsentSettings)
    purpose = node.scenario.purpose
    at = section.day
    path = node.context.node_config.get("consent") or section.registry
    if path:
        registry = ConsentRegistry.from_csv(node.scenario.resolve(str(path)))
    else:
        rng = np.random.default_rng(node.scenario.seed + 1)
        n = len(ids)
        draw = rng.random(n)
        revoked_share, expired_share = section.demo_revoked, section.demo_expired
        revoked = draw < revoked_share
        expired = (draw >= revoked_share) & (draw < revoked_share + expired_share)
        registry = ConsentRegistry.grant_all([u for u, e in zip(ids, expired) if not e], node.name, purpose)
        for u in (u for u, r in zip(ids, revoked) if r):
            registry.revoke(u, node.name, at - dt.timedelta(days=30), purpose)
        for u in (u for u, e in zip(ids, expired) if e):
            registry.add(
                ConsentRecord(u, node.name, purpose, frozenset({"*"}), dt.date(2020, 1, 1), at - dt.timedelta(days=1))
            )
    return registry.filter(ids, node.name, purpose, at)
