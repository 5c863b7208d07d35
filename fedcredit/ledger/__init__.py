"""Compliance ledger: signed, hash-chained records of what a run did, plus node egress logs.

The coordinator writes one :class:`Ledger` per run; each data node writes its own
:class:`EgressLog` of everything it sent. :func:`verify` lets an auditor check both offline.
Record format and the verification procedure: docs/ledger.md.
"""

from fedcredit.ledger.keys import (
    generate_signing_key,
    load_private_key,
    load_public_key,
    public_key_from_hex,
    public_key_hex,
    save_private_key,
    save_public_key,
)
from fedcredit.ledger.records import (
    GENESIS_HASH,
    LEDGER_KINDS,
    LedgerError,
    LedgerFileError,
    Record,
    canonical_json,
    config_hash,
    message_digest,
    message_entry,
)
from fedcredit.ledger.store import read_records
from fedcredit.ledger.verify import EgressCheck, VerificationReport, verify
from fedcredit.ledger.writer import EgressLog, Ledger

__all__ = [
    "EgressCheck",
    "EgressLog",
    "GENESIS_HASH",
    "LEDGER_KINDS",
    "Ledger",
    "LedgerError",
    "LedgerFileError",
    "Record",
    "VerificationReport",
    "canonical_json",
    "config_hash",
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "message_digest",
    "message_entry",
    "public_key_from_hex",
    "public_key_hex",
    "read_records",
    "save_private_key",
    "save_public_key",
    "verify",
]
