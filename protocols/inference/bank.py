"""The bank's side of joint inference: ask for the consented applicants, combine, score.

Consent is the bank's: the caller passes one refusal reason (or ``None``) per applicant, from
the bank's consent registry for the run's purpose; refused applicants are never sent. Applicants
the centre does not hold come back *not found* and are left unscored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from protocols.common.channel import new_private_key
from protocols.common.party import Envelope, data_digest
from protocols.inference._base import InferenceParty, _State
from protocols.inference.bodies import PartialsBody, RequestBody, pack_usccs
from protocols.inference.messages import PROTOCOL, InferenceError, InferenceKey, InferencePartials, InferenceRequest
from protocols.inference.model import BankModelPart

SCORED = "scored"
UNKNOWN = "unknown_at_centre"
REFUSED_PREFIX = "refused_consent:"
REFUSED_QUOTA = "refused_quota"  # over the centre's inference quota (the centre logs it)
REFUSED_BY_CENTRE = "refused_consent_at_centre"  # the centre's own token re-check refused it (counted there)


class InferenceBank(InferenceParty):
    """Scores one batch of applicants: ``ids`` (normalised USCCs), the bank's preprocessed
    features ``X`` of those rows, and ``refusals[i]`` = consent refusal reason or ``None``.

    Results once :attr:`finished`: :meth:`results` (per applicant) and :meth:`counts`.
    """

    role = "bank"

    def __init__(
        self,
        name: str,
        peer: str,
        *,
        purpose: str,
        session: str,
        batch: int,
        model: BankModelPart,
        ids: list[str],
        X: np.ndarray,
        refusals: list[str | None],
        tokens: list[str] | None = None,
    ) -> None:
        self.part = model
        self.tokens = list(tokens) if tokens is not None else [""] * len(ids)
        if len(self.tokens) != len(ids):
            raise InferenceError(f"bank {name!r}: {len(self.tokens)} consent tokens for {len(ids)} applicants")
        self.ids = list(ids)
        self.X = np.asarray(X, dtype=np.float64)
        self.refusals = list(refusals)
        if self.X.ndim != 2 or self.X.shape != (len(self.ids), model.n_features):
            raise InferenceError(
                f"bank {name!r}: features of shape {self.X.shape} for {len(self.ids)} applicants, "
                f"model expects {model.n_features} columns"
            )
        if len(self.refusals) != len(self.ids):
            raise InferenceError(
                f"bank {name!r}: {len(self.refusals)} consent decisions for {len(self.ids)} applicants"
            )
        if not np.all(np.isfinite(self.X)):
            r, c = (int(i) for i in np.argwhere(~np.isfinite(self.X))[0])
            raise InferenceError(f"bank {name!r}: non-finite feature at applicant row {r}, column {c}")
        if len(set(self.ids)) != len(self.ids):
            raise InferenceError(f"bank {name!r}: duplicate applicant USCCs in batch {batch}")
        digest = data_digest(np.array(self.ids, dtype=str), self.X, np.array([r or "" for r in self.refusals], str))
        super().__init__(
            name,
            peer,
            session=session,
            batch=batch,
            data_digest=digest,
            status=[REFUSED_PREFIX + r if r else "" for r in self.refusals],
            scores=np.full(len(self.ids), np.nan),
            purpose=purpose,
        )

    @classmethod
    def _identity(cls, s: _State) -> dict[str, Any]:
        return {"purpose": s.purpose}

    def _after_restore(self) -> None:
        self.s.scores = np.asarray(self.s.scores, dtype=np.float64)

    @property
    def model(self) -> BankModelPart:
        return self.part

    @property
    def sent(self) -> np.ndarray:
        """Positions of the applicants whose consent allows the query (the only ones sent)."""
        return np.array([i for i, r in enumerate(self.refusals) if not r], dtype=np.int64)

    def start(self) -> list[Envelope]:
        self.s.phase = "wait_key"
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if self.s.phase == "wait_key":
            return self._on_key(self._one(inbox, InferenceKey))
        if self.s.phase == "requested":
            return self._on_partials(self._one(inbox, InferencePartials))
        raise self._fail(f"unexpected message(s) {[e.kind for e in inbox]}")

    def _on_key(self, msg: InferenceKey) -> list[Envelope]:
        mine = new_private_key()
        link = self._channel(mine, msg.public_key)
        sent = self.sent
        body = RequestBody(
            self.s.purpose,
            self.part.model_type,
            int(sent.size),
            pack_usccs([self.ids[i] for i in sent]),
            self.part.split_ids(),
            "\n".join(self.tokens[i] for i in sent).encode("ascii") if sent.size else b"",
        )
        sealed = self._seal(link, "InferenceRequest", body)
        self.s.secret, self.s.peer_public = mine, msg.public_key
        self.s.phase = "requested"
        request = InferenceRequest(PROTOCOL, self.s.session, self.s.batch, link.public_key, sealed)
        return [self.send(self.s.peer, request)]

    def _on_partials(self, msg: InferencePartials) -> list[Envelope]:
        body = self._open(
            self._channel(self.s.secret, self.s.peer_public), msg.sealed, "InferencePartials", PartialsBody
        )
        sent = self.sent
        n, k = int(sent.size), int(self.part.split_ids().size)
        found = np.asarray(body.found)
        if body.count != n or found.shape != (n,) or found.dtype != np.bool_:
            raise self._fail(f"centre answered {body.count} slots (found mask {found.shape}), asked {n}")
        if self.part.model_type == "hetero_lr":
            u = np.asarray(body.scores, dtype=np.float64)
            if u.shape != (n,) or not np.all(np.isfinite(u)):
                raise self._fail(f"centre returned partial scores of shape {u.shape} for {n} applicants")
            left = np.zeros((n, 0), dtype=bool)
        else:
            bits = np.asarray(body.bits, dtype=np.uint8)
            if body.n_bits != n * k or bits.size != (n * k + 7) // 8:
                raise self._fail(f"{body.n_bits} direction bits in {bits.size} bytes, expected {n * k}")
            left = np.unpackbits(bits, count=n * k).astype(bool).reshape(n, k) if n * k else np.zeros((n, k), bool)
            u = np.zeros(n)
        refused = np.zeros(n, dtype=bool) if body.refused is None else np.asarray(body.refused)
        if refused.shape != (n,) or refused.dtype != np.bool_ or (refused & found).any():
            raise self._fail(f"centre's refusal mask has shape {refused.shape} or overlaps its answers")
        by_centre = np.zeros(n, dtype=bool) if body.consent_refused is None else np.asarray(body.consent_refused)
        if by_centre.shape != (n,) or by_centre.dtype != np.bool_ or (by_centre & found).any():
            raise self._fail(f"centre's consent refusal mask has shape {by_centre.shape} or overlaps its answers")
        rows = sent[found]
        if rows.size:
            self.s.scores[rows] = self.part.probabilities(self.X[rows], u[found], left[found])
        for i, ok, no, nc in zip(sent.tolist(), found.tolist(), refused.tolist(), by_centre.tolist()):
            self.s.status[i] = SCORED if ok else (REFUSED_BY_CENTRE if nc else REFUSED_QUOTA if no else UNKNOWN)
        self.s.secret, self.s.peer_public = b"", b""
        self.s.phase = "done"
        return []

    def results(self) -> tuple[list[str], np.ndarray, list[str]]:
        """(USCCs, probabilities with NaN where not scored, status per applicant)."""
        if not self.finished:
            raise RuntimeError("results are available once the inference exchange has finished")
        return list(self.ids), np.asarray(self.s.scores, dtype=np.float64).copy(), list(self.s.status)

    def counts(self) -> dict[str, Any]:
        """Aggregate numbers for the ledger: never an id or a score."""
        refused: dict[str, int] = {}
        for r in self.refusals:
            if r:
                refused[r] = refused.get(r, 0) + 1
        status = self.s.status
        out = {
            "requested": len(self.ids),
            "refused": dict(sorted(refused.items())),
            "sent": int(self.sent.size),
            "found": sum(st == SCORED for st in status),
            "unknown_at_centre": sum(st == UNKNOWN for st in status),
            "scored": int(np.isfinite(np.asarray(self.s.scores)).sum()),
        }
        by_centre = sum(st == REFUSED_BY_CENTRE for st in status)
        if by_centre:
            out["refused_by_centre"] = by_centre
        over = sum(st == REFUSED_QUOTA for st in status)
        if over:
            out["refused_quota"] = over
        return out
