"""Consent-filtered ECDH private set intersection (X25519) on USCC ids.

The public surface of the package. Its modules, one job each: ``ids`` (USCC rules),
``prepare`` (input hygiene), ``messages``, ``kernels`` (X25519 loops, worker pools),
``matching`` (the intersection in the agreed order), ``engine`` (:class:`PsiParty`, one side's
state machine), ``local`` (:func:`run_local`, both sides in one process tree) and ``party``
(:class:`~protocols.psi.party.PsiRelayParty`, the restartable relay party)."""

from protocols.psi.engine import DEFAULT_CHUNK, DEFAULT_TRUNCATE, MIN_TRUNCATE, PsiParty, PsiProtocolError, PsiResult
from protocols.psi.ids import USCC_ALPHABET, normalise_id, uscc_error, uscc_mask
from protocols.psi.kernels import POINT_BYTES, open_pool, session_salt
from protocols.psi.local import run_local
from protocols.psi.messages import PROTOCOL, STEP1, STEP2, PsiBlinded, PsiReblinded
from protocols.psi.party import PsiRelayParty
from protocols.psi.prepare import MAX_ITEMS, PREPARE_BLOCK, InvalidIdError

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_TRUNCATE",
    "InvalidIdError",
    "MAX_ITEMS",
    "MIN_TRUNCATE",
    "POINT_BYTES",
    "PREPARE_BLOCK",
    "PROTOCOL",
    "PsiBlinded",
    "PsiParty",
    "PsiProtocolError",
    "PsiReblinded",
    "PsiRelayParty",
    "PsiResult",
    "STEP1",
    "STEP2",
    "USCC_ALPHABET",
    "normalise_id",
    "open_pool",
    "run_local",
    "session_salt",
    "uscc_error",
    "uscc_mask",
]
