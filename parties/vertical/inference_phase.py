"""Node side of joint inference: each party loads ITS OWN released model part and its own data.

* Model part: node_config ``model`` (deployment: a path on the node's own storage) or
  ``[inference] model_dir``/nodes/<party>/model.json (the directory of the training run).
* Bank: applicants come from node_config ``applicants`` or ``[inference] applicants`` (a table
  of USCC + the bank's feature columns, label optional: :func:`fedcredit.data.applicants.load_applicants`);
  without either, the bank re-scores its own data table. Consent for the run's purpose is checked
  once for all applicants against their consent tokens (:func:`parties.vertical.consent.query_refusals`); the
  refusal list stays in node state. Each batch's results are written to ``scores.csv`` on the
  bank's node: ``uscc, score, status``.
* Centre: re-checks every queried firm's consent token (sent sealed with the request) against its
  own trust anchors and verified token store (:func:`parties.vertical.consent.centre_query_check`),
  answers the authorised ones from its whole table and appends what it was asked to ``query_log.csv`` on its
  own node (the consented query log regulators require the centre to keep). Its answers, repeats
  and quota refusals go to ``inference_book.jsonl`` on its node too: the book
  (:class:`protocols.inference.quota.QueryBook`) it enforces its quotas and repeat answers from.

* Scorecard parts (``mode = "scorecard"`` training): each side's ``preprocessor`` is its own WOE
  encoder (:mod:`protocols.scorecard.encoder`), applied to its own raw columns; the bank's part
  holds the points scale, and ``scores.csv`` gets a ``points`` column (base + the bank's points +
  the centre's points, whose sum arrives sealed as the LR partial score does).

Only counts, model hashes and the batch position go into summaries (and so into the ledger).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedcredit.config.sections import InferenceSettings
from fedcredit.data.applicants import load_applicants
from fedcredit.data.loaders import PartyData
from fedcredit.features import LocalPreprocessor
from parties.common.node import NodeRuntime
from parties.vertical.consent import bank_tokens, centre_query_check, query_refusals
from parties.vertical.phase import RestartablePhase
from protocols.inference import (
    BankModelPart,
    CentreModelPart,
    InferenceBank,
    InferenceCentre,
)
from protocols.inference.quota import QueryBook
from protocols.scorecard.encoder import ENCODER_TYPE, WoeEncoder
from protocols.scorecard.points import ScoreScale

InferenceParty = InferenceBank | InferenceCentre

log = logging.getLogger(__name__)
SCORES_FILE = "scores.csv"
QUERY_LOG_FILE = "query_log.csv"
BOOK_FILE = "inference_book.jsonl"


def query_book(node: NodeRuntime) -> QueryBook:
    """The centre's record of earlier answers (one JSON object per line), for quotas and repeats."""
    path = node.dir / BOOK_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return QueryBook(entries=[json.loads(line) for line in lines if line.strip()])


class ModelPartError(RuntimeError):
    """A party's model part is missing or unusable; the message names the party and the path."""


# -- inputs --------------------------------------------------------------------------------


def model_path(node: NodeRuntime) -> Path:
    cfg = node.context.node_config
    if "model" in cfg:
        return Path(node.scenario.resolve(str(cfg["model"])))
    model_dir = node.scenario.settings(InferenceSettings).model_dir
    if model_dir is None:
        raise ModelPartError(
            f"party {node.name!r}: no model part configured (set [inference] model_dir "
            "to the training run's directory, or node_config 'model')"
        )
    return Path(node.scenario.resolve(model_dir)) / "nodes" / node.name / "model.json"


@functools.lru_cache(maxsize=4)
def _read_part(path: str, _mtime_ns: int, _size: int) -> tuple[dict, str]:
    body = Path(path).read_bytes()
    return json.loads(body), hashlib.sha256(body).hexdigest()


def load_model_part(node: NodeRuntime) -> tuple[dict, str, Path]:
    """(model.json content, its SHA-256 as released by training, path); clear errors naming the party."""
    path = model_path(node)
    if not path.is_file():
        raise ModelPartError(
            f"party {node.name!r} has no trained model part at {path} (train first, e.g. "
            "`fedcredit simulate configs/vertical-lr.toml --out <model_dir>`, or set "
            "node_config 'model')"
        )
    st = path.stat()
    try:
        part, sha = _read_part(str(path), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError) as exc:
        raise ModelPartError(f"party {node.name!r}: cannot read model part {path}: {exc}") from None
    for key in ("role", "feature_names", "preprocessor", "model"):
        if key not in part:
            raise ModelPartError(f"party {node.name!r}: model part {path} has no {key!r}")
    if part["role"] != node.role:
        raise ModelPartError(f"party {node.name!r} (role {node.role}): model part {path} belongs to a {part['role']!r}")
    return part, sha, path


def _columns(data: PartyData, names: list[str], who: str) -> np.ndarray:
    """The table's columns in the model's feature order (by name)."""
    have = {n: j for j, n in enumerate(data.feature_names)}
    missing = [n for n in names if n not in have]
    if missing:
        raise ModelPartError(f"{who}: data lacks feature column(s) {missing} that its model part uses")
    return data.features[:, [have[n] for n in names]]


@functools.lru_cache(maxsize=4)
def _read_applicants(path: str, names: tuple[str, ...], _mtime_ns: int, _size: int) -> PartyData:
    return load_applicants(path, list(names))


def applicants(node: NodeRuntime, feature_names: list[str]) -> PartyData:
    """The bank's applicants with the model's feature columns (raw)."""
    source = node.context.node_config.get("applicants") or node.scenario.settings(InferenceSettings).applicants
    if not source:
        data = node.data()
        return PartyData(
            list(data.ids), _columns(data, feature_names, f"bank {node.name!r}"), list(feature_names), None
        )
    path = Path(node.scenario.resolve(str(source)))
    st = path.stat() if path.exists() else None
    return _read_applicants(str(path), tuple(feature_names), st.st_mtime_ns if st else 0, st.st_size if st else 0)


def _refusals(node: NodeRuntime, ids: list[str]) -> tuple[list[str | None], dict]:
    """Consent reason per applicant (None = allowed) for the run's purpose; computed once per run."""
    cached = node.get("inference_refusals")
    if cached is not None:
        c = json.loads(str(cached))
        if c["n"] == len(ids):
            return [r or None for r in c["reasons"]], c["summary"]
    centre = node.scenario.parties_with_role("credit_centre")[0].name
    reasons, summary = query_refusals(node, ids, centre)
    node.put(
        "inference_refusals", json.dumps({"n": len(ids), "reasons": [r or "" for r in reasons], "summary": summary})
    )
    return reasons, summary


def part_transform(part: dict) -> Callable[[np.ndarray], np.ndarray]:
    """What turns this party's raw columns (its model part's ``feature_names``, in order) into the
    model's inputs: a scorecard part's WOE encoder, else the fitted local preprocessing."""
    pre = part["preprocessor"]
    if isinstance(pre, dict) and pre.get("type") == ENCODER_TYPE:
        return WoeEncoder.from_dict(pre).transform
    return LocalPreprocessor.from_dict(pre).transform


def scorecard_scale(part: dict) -> ScoreScale | None:
    """The points scale of a scorecard part (the bank's), None for other model parts."""
    sc = part.get("scorecard")
    if not isinstance(sc, dict):
        return None
    return ScoreScale(base_score=float(sc["base_score"]), base_odds=float(sc["base_odds"]), pdo=float(sc["pdo"]))


# -- the phase -------------------------------------------------------------------------------


class InferencePhase(RestartablePhase[InferenceParty]):
    """One batch of applicants per phase run; params: ``peer``, ``batch``, ``batch_size``."""

    def _params(self, node: NodeRuntime, params: dict | None = None) -> dict:
        if params is not None:
            node.put("inference_params", json.dumps(params))
            return params
        raw = node.get("inference_params")
        if raw is None:
            raise RuntimeError(f"node {node.name}: inference step arrived before init")
        return json.loads(str(raw))

    def _bank_inputs(
        self, node: NodeRuntime, params: dict
    ) -> tuple[BankModelPart, list[str], np.ndarray, list[str | None], list[str]]:
        part, _, _ = load_model_part(node)
        model = BankModelPart.from_dict(part["model"], f"bank {node.name!r}")
        apps = applicants(node, list(part["feature_names"]))
        b, size = int(params["batch"]), int(params["batch_size"])
        lo, hi = b * size, min((b + 1) * size, len(apps))
        reasons, _ = _refusals(node, apps.ids)
        transform = part_transform(part)
        X = transform(apps.features[lo:hi]) if hi > lo else np.zeros((0, model.n_features))
        ids = apps.ids[lo:hi]
        held = bank_tokens(node, str(params["peer"]), ids) if ids else {}  # sent sealed: the centre re-checks
        return model, ids, X, reasons[lo:hi], [held.get(u, "") for u in ids]

    def _centre_inputs(
        self, node: NodeRuntime
    ) -> tuple[CentreModelPart, list[str], np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        part, _, _ = load_model_part(node)
        model = CentreModelPart.from_dict(part["model"], f"credit centre {node.name!r}")
        data = node.data()
        raw = _columns(data, list(part["feature_names"]), f"credit centre {node.name!r}")
        return model, data.ids, raw, part_transform(part)

    def create(self, node: NodeRuntime, params: dict) -> InferenceParty:
        p = self._params(node, params)
        session = str(node.get("run_id"))
        if node.role == "bank":
            model, ids, X, reasons, tokens = self._bank_inputs(node, p)
            return InferenceBank(
                node.name,
                p["peer"],
                session=session,
                batch=int(p["batch"]),
                purpose=node.scenario.purpose,
                model=model,
                ids=ids,
                X=X,
                refusals=reasons,
                tokens=tokens,
            )
        cmodel, cids, raw, transform = self._centre_inputs(node)
        return InferenceCentre(
            node.name,
            p["peer"],
            session=session,
            batch=int(p["batch"]),
            model=cmodel,
            ids=cids,
            features=raw,
            transform=transform,
            **self._quota(node, p["peer"]),
        )

    @staticmethod
    def _quota(node: NodeRuntime, bank: str) -> dict:
        """The centre's own records and checks: quota book, model digest, day, consent re-check."""
        return {
            "book": query_book(node),
            "model_digest": load_model_part(node)[1],
            "day": dt.date.today().isoformat(),
            "consent": centre_query_check(node, bank),
        }

    def progress(self, node: NodeRuntime, party: InferenceParty) -> dict:
        """After init (the party waits for its first message): which model part this node loaded,
        so the coordinator can check it before any applicant is queried."""
        if party.s.phase not in ("wait_key", "wait_request"):
            return {}
        return {"model": {"type": party.model.model_type, "sha256": load_model_part(node)[1]}}

    def restore(self, node: NodeRuntime, state: bytes) -> InferenceParty:
        p = self._params(node)
        if node.role == "bank":
            model, ids, X, reasons, tokens = self._bank_inputs(node, p)
            return InferenceBank.from_state(state, model=model, ids=ids, X=X, refusals=reasons, tokens=tokens)
        cmodel, cids, raw, transform = self._centre_inputs(node)
        return InferenceCentre.from_state(
            state, model=cmodel, ids=cids, features=raw, transform=transform, **self._quota(node, p["peer"])
        )

    def finish(self, node: NodeRuntime, party: InferenceParty) -> dict:
        p = self._params(node)
        _, sha, _ = load_model_part(node)
        model = {"type": party.model.model_type, "sha256": sha}
        if isinstance(party, InferenceBank):
            return self._finish_bank(node, party, p, model)
        return self._finish_centre(node, party, p, model)

    def _finish_bank(self, node: NodeRuntime, party: InferenceBank, p: dict, model: dict) -> dict:
        ids, scores, status = party.results()
        b, size = int(p["batch"]), int(p["batch_size"])
        all_ids = applicants(node, party_feature_names(node)).ids
        total = len(all_ids)
        path = node.dir / SCORES_FILE
        # a scorecard also gets its points: base + the bank's points + the centre's points
        scale = scorecard_scale(load_model_part(node)[0])
        points = scale.score(scores).tolist() if scale is not None else [None] * len(ids)
        with path.open("w" if b == 0 else "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if b == 0:
                w.writerow(["uscc", "score", "status"] + (["points"] if scale is not None else []))
            for u, s, st, pt in zip(ids, scores.tolist(), status, points):
                row = [u, "" if s != s else f"{s:.10g}", st]
                if scale is not None:
                    row.append("" if s != s else f"{pt:.10g}")
                w.writerow(row)
        _, consent = _refusals(node, all_ids)
        return {
            "batch": b,
            "more": (b + 1) * size < total,
            "applicants_total": total,
            **party.counts(),
            "consent": consent,
            "model": model,
            "scores_path": str(path),
        }

    def _finish_centre(self, node: NodeRuntime, party: InferenceCentre, p: dict, model: dict) -> dict:
        queried, found = party.query_log()
        path = node.dir / QUERY_LOG_FILE
        new = not path.exists() or path.stat().st_size == 0
        day = dt.date.today().isoformat()
        run_id, bank = str(node.get("run_id")), p["peer"]
        with path.open("a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["date", "run_id", "bank", "purpose", "batch", "uscc", "found"])
            for u, f in zip(queried, found.tolist()):
                w.writerow([day, run_id, bank, party.s.purpose, int(p["batch"]), u, int(f)])
        with (node.dir / BOOK_FILE).open("a", encoding="utf-8") as fh:
            for e in party.book_entries():
                fh.write(json.dumps(dataclasses.asdict(e)) + "\n")
        return {"batch": int(p["batch"]), **party.counts(), "model": model}


def party_feature_names(node: NodeRuntime) -> list[str]:
    return list(load_model_part(node)[0]["feature_names"])
