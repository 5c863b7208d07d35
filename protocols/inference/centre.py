"""The credit centre's side of joint inference: answer one batch from its own table.

The centre answers for the enterprises it holds and reports the others as *not found* (not an
error), and refuses a request whose purpose it does not serve (default: ``loan_decision``). Its
state keeps what it was asked (the query log the node appends to ``query_log.csv``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from protocols.common.channel import new_private_key, public_key_of
from protocols.common.party import Envelope
from protocols.inference._base import InferenceParty
from protocols.inference.bodies import PartialsBody, RequestBody, unpack_usccs
from protocols.inference.messages import PROTOCOL, InferenceError, InferenceKey, InferencePartials, InferenceRequest
from protocols.inference.model import CentreModelPart
from protocols.inference.quota import FRESH, REPEAT, BookEntry, QueryBook, model_key

ACCEPTED_PURPOSES = ("loan_decision",)
CONSENT_REFUSED = "consent_refused"  # a decision: the centre's token re-check refused this USCC

# The centre's consent re-check at query time: (queried USCCs, their tokens newline-joined) ->
# refusal reason per USCC ('' = authorised). It is the centre's own policy (signature, issuer,
# audience, purpose, categories, validity, revocation, against its verified token store),
# injected so this package stays free of the framework, as protocols.consent.centre.Judge.
ConsentCheck = Callable[[list[str], bytes], Sequence[str]]

log = logging.getLogger(__name__)


class InferenceCentre(InferenceParty):
    """Answers one batch: ``ids`` and ``features`` are the centre's whole table (raw);
    ``transform`` is its fitted local preprocessing, applied to the found rows only.

    Its state binds no data digest: the centre answers from the table it holds at the step
    it answers, and keeps only the key and its query log between steps.

    ``book`` (:class:`~protocols.inference.quota.QueryBook`, the node's record of earlier answers)
    turns the quotas and repeat answers on: a firm asked again within the window gets the answer
    already given, a firm or run over quota is refused and logged. ``model_digest`` names the
    model part (a different model is a different question); ``day`` is the ISO date of the answer.
    """

    role = "credit_centre"

    def __init__(
        self,
        name: str,
        peer: str,
        *,
        session: str,
        batch: int,
        model: CentreModelPart,
        ids: list[str],
        features: np.ndarray,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        accepted_purposes: tuple[str, ...] = ACCEPTED_PURPOSES,
        book: QueryBook | None = None,
        model_digest: str = "",
        day: str | None = None,
        consent: ConsentCheck | None = None,
    ) -> None:
        self.consent = consent
        self.book = book
        self.model_digest = model_digest
        self.day = day or dt.date.today().isoformat()
        self.part = model
        self.ids = ids
        self.features = np.asarray(features, dtype=np.float64)
        if self.features.ndim != 2 or self.features.shape[1] != model.n_features:
            raise InferenceError(
                f"credit centre {name!r}: table has {self.features.shape} features, "
                f"model expects {model.n_features} columns"
            )
        self.transform = transform or (lambda X: X)
        self.accepted_purposes = tuple(accepted_purposes)
        self._index: dict[str, int] | None = None
        super().__init__(name, peer, session=session, batch=batch, found=np.zeros(0, dtype=bool))

    def _after_restore(self) -> None:
        self.s.found = np.asarray(self.s.found, dtype=bool)

    @property
    def model(self) -> CentreModelPart:
        return self.part

    def start(self) -> list[Envelope]:
        self.s.secret = new_private_key()
        self.s.phase = "wait_request"
        key = InferenceKey(PROTOCOL, self.s.session, self.s.batch, public_key_of(self.s.secret))
        return [self.send(self.s.peer, key)]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if self.s.phase != "wait_request":
            raise self._fail(f"unexpected message(s) {[e.kind for e in inbox]}")
        msg = self._one(inbox, InferenceRequest)
        link = self._channel(self.s.secret, msg.public_key)
        body = self._open(link, msg.sealed, "InferenceRequest", RequestBody)
        usccs, split_ids = self._check(body)
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.ids)}
        pos = np.fromiter((self._index.get(u, -1) for u in usccs), dtype=np.int64, count=len(usccs))
        n, k = len(usccs), split_ids.size
        key = model_key(self.model_digest, split_ids.tolist())
        denied = self._consent(usccs, body.tokens)
        allowed = [u for u, d in zip(usccs, denied) if not d]
        planned = iter(
            [(FRESH, None)] * len(allowed)
            if self.book is None
            else self.book.plan(self.s.peer, self.s.session, key, allowed, self.day)
        )
        plan = [(CONSENT_REFUSED, None) if d else next(planned) for d in denied]
        fresh = np.array([d == FRESH for d, _ in plan], dtype=bool)
        found = (pos >= 0) & fresh
        X = self.transform(self.features[pos[found]]) if found.any() else np.zeros((0, self.part.n_features))
        u_found, left_found = self.part.answer(np.asarray(X, dtype=np.float64), split_ids)
        lr = self.part.model_type == "hetero_lr"
        scores = np.zeros(n)
        left = np.zeros((n, k), dtype=bool)
        if lr:
            scores[found] = u_found
        else:
            left[found] = left_found
        first: dict[str, int] = {}
        for i, (decision, earlier) in enumerate(plan):
            if decision == REPEAT:  # the answer already given, byte for byte
                if earlier is None:
                    j = first[usccs[i]]
                    found[i], scores[i], left[i] = found[j], scores[j], left[j]
                else:
                    found[i] = earlier.found
                    if lr:
                        scores[i] = earlier.value[0] if earlier.value else 0.0
                    else:
                        left[i] = np.asarray(earlier.value, dtype=bool) if earlier.value else False
            first.setdefault(usccs[i], i)
        refused = np.array([d.startswith("refused") for d, _ in plan], dtype=bool)
        if refused.any():
            log.warning(
                "credit centre %r refused %d of %d inference queries from %r (run %s, batch %d): %s",
                self.name,
                int(refused.sum()),
                n,
                self.s.peer,
                self.s.session,
                self.s.batch,
                sorted({d for d, _ in plan if d.startswith("refused")}),
            )
        if lr:
            bits, n_bits = np.zeros(0, dtype=np.uint8), 0
        else:
            scores, bits, n_bits = np.zeros(0), np.packbits(left.ravel()), n * k
        reply = PartialsBody(n, found, scores.astype(np.float64), int(n_bits), bits, refused, np.asarray(denied))
        self.s.decisions, self.s.model_key = [d for d, _ in plan], key
        self.s.values = [
            ([float(scores[i])] if lr else [int(b) for b in left[i]]) if found[i] else [] for i in range(n)
        ]
        sealed = self._seal(link, "InferencePartials", reply)
        self.s.secret = b""  # the private key is not kept once used
        self.s.purpose, self.s.queried, self.s.found = body.purpose, usccs, found
        self.s.phase = "done"
        return [self.send(self.s.peer, InferencePartials(PROTOCOL, self.s.session, self.s.batch, sealed))]

    def _consent(self, usccs: list[str], tokens: bytes) -> np.ndarray:
        """Bool per USCC: refused by the centre's consent re-check (counts by reason kept, ids not)."""
        n = len(usccs)
        if self.consent is None or n == 0:
            return np.zeros(n, dtype=bool)
        if not isinstance(tokens, bytes):
            raise self._fail("request carries no consent tokens")
        reasons = [str(r) for r in self.consent(usccs, tokens)]
        if len(reasons) != n:
            raise self._fail(f"consent check returned {len(reasons)} decisions for {n} USCCs")
        denied = np.array([bool(r) for r in reasons], dtype=bool)
        counts: dict[str, int] = {}
        for r in reasons:
            if r:
                counts[r] = counts.get(r, 0) + 1
        self.s.consent_refused = dict(sorted(counts.items()))
        if denied.any():
            log.warning(
                "credit centre %r refused %d of %d inference queries from %r on its consent re-check: %s",
                self.name, int(denied.sum()), n, self.s.peer, self.s.consent_refused,
            )  # fmt: skip
        return denied

    def _check(self, body: RequestBody) -> tuple[list[str], np.ndarray]:
        """The request's USCCs and split ids, once its purpose and model type are accepted."""
        if body.purpose not in self.accepted_purposes:
            raise self._fail(
                f"request for purpose {body.purpose!r}: this centre answers inference queries "
                f"only for {list(self.accepted_purposes)}"
            )
        if body.model_type != self.part.model_type:
            raise self._fail(
                f"bank scores with a {body.model_type!r} model, this centre's part is "
                f"{self.part.model_type!r} (model parts from different training runs?)"
            )
        if not isinstance(body.count, int) or body.count < 0:
            raise self._fail(f"bad applicant count {body.count!r}")
        usccs = unpack_usccs(body.usccs, body.count)
        split_ids = np.asarray(body.split_ids if body.split_ids is not None else [], dtype=np.uint64).ravel()
        if self.part.model_type == "hetero_lr" and split_ids.size:
            raise self._fail("split ids in an LR request")
        return usccs, split_ids

    def _kept(self) -> list[int]:
        """Positions the centre's records keep: every query its consent re-check did not refuse."""
        return [i for i, d in enumerate(self.s.decisions) if d != CONSENT_REFUSED]

    def query_log(self) -> tuple[list[str], np.ndarray]:
        """(queried USCCs, found mask): the centre's own record of what this bank asked (consented only)."""
        keep = self._kept()
        return [self.s.queried[i] for i in keep], np.asarray(self.s.found, dtype=bool)[keep].copy()

    def book_entries(self) -> list[BookEntry]:
        """What this batch adds to the centre's book (answers, repeats and refusals)."""
        found = np.asarray(self.s.found, dtype=bool)
        return [
            BookEntry(self.day, self.s.session, self.s.peer, u, self.s.model_key, d, bool(f), list(v))
            for u, d, f, v in zip(self.s.queried, self.s.decisions, found.tolist(), self.s.values)
            if d != CONSENT_REFUSED
        ]

    def counts(self) -> dict[str, Any]:
        found = np.asarray(self.s.found, dtype=bool)
        decisions = list(self.s.decisions)
        refused = sum(d.startswith("refused") for d in decisions)
        denied = decisions.count(CONSENT_REFUSED)
        out = {
            "queried": len(self.s.queried),
            "found": int(found.sum()),
            "not_found": int((~found).sum()) - refused - denied,
            "purpose": self.s.purpose,
        }
        if self.consent is not None:  # the centre's own consent re-check: counts by reason, never an id
            out["consent_refused"] = dict(self.s.consent_refused)
        if self.book is not None:  # quotas on: say what they did (counts only, never an id)
            out |= {"refused_quota": refused, "repeats": decisions.count(REPEAT)}
        return out
