"""Consent: which enterprise authorised whom to use its public credit data, for what.

* :mod:`fedcredit.consent.tokens` — the authorisation itself: an EdDSA-signed JWT per enterprise,
  issuer keys (JWK), signed versioned revocation lists;
* :mod:`fedcredit.consent.check` — the centre's per-run check: a store of verified tokens, then
  vectorised audience/purpose/category/validity/revocation checks, counts by reason;
* :mod:`fedcredit.consent.demo` — generated demo material for bundled and synthetic data;
* :mod:`fedcredit.consent.registry` — the bank's own consent CSV (an optional extra filter).

docs/consent.md describes the flow and the security argument.
"""

from fedcredit.consent.registry import (
    ALL_CATEGORIES,
    COLUMNS,
    PURPOSES,
    REASONS,
    ConsentError,
    ConsentFilterResult,
    ConsentRecord,
    ConsentRegistry,
)

__all__ = [
    "ALL_CATEGORIES",
    "COLUMNS",
    "PURPOSES",
    "REASONS",
    "ConsentError",
    "ConsentFilterResult",
    "ConsentRecord",
    "ConsentRegistry",
]
