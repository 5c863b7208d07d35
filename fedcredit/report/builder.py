"""Assemble the run report's sections from a :class:`~fedcredit.report.run_data.RunData`.

One function per section, each saying where its numbers come from. Every section is always
present; when a run has nothing for it (an inference run has no training curve, a party's own
report has no pooled reference) the section says so and why, so a reader never mistakes a
missing plot for a missing feature.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from collections import defaultdict
from datetime import datetime
from importlib import metadata

import numpy as np

from fedcredit.report import curves, plots
from fedcredit.report.html import Section, esc, gallery, page, para, table
from fedcredit.report.run_data import RunData

SECTION_IDS = ("summary", "quality", "training", "parties", "compliance", "horizontal", "settings")
PACKAGES = ("fedcredit", "flwr", "numpy", "pandas", "scikit-learn", "cryptography", "phe", "gmpy2", "tenseal", "torch")
REFERENCE_LABELS = {
    "joint": "centralised joint (pooled data)",
    "bank_only": "bank only (pooled)",
}


def _num(value: object) -> float:
    """A history value as a float; missing or non-numeric values become NaN (a gap in the plot)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def render(data: RunData) -> str:
    who = "the whole run directory (harness view)" if data.viewer is None else f"party {data.viewer!r} only"
    title = f"fedcredit run report: {data.status.get('scenario') or data.run_start.get('scenario', '?')} ({data.mode})"
    subtitle = f"{data.run_dir} · run {data.status.get('run_id', '?')} · shows what {who} may see"
    sections = [
        summary(data),
        quality(data),
        training(data),
        parties(data),
        compliance(data),
        horizontal(data),
        settings(data),
    ]
    return page(title, subtitle, sections)


def summary(data: RunData) -> Section:
    s = Section("summary", "Summary")
    m, st = data.metrics, data.status
    rows: list[list[object]] = [["status", st.get("status", "unknown")]]
    if st.get("status") == "failed":
        rows.append(["failed", f"party {st.get('party')!r} at step {st.get('step')!r}: {st.get('error')}"])
    for k in ("auc", "ks", "gini", "log_loss"):
        if k in m:
            rows.append([f"test {k}", float(m[k])])
    for k in (
        "rows_train",
        "rows_validation",
        "rows_test",
        "epochs",
        "trees",
        "rounds",
        "seconds",
        "flower_round_trips",
    ):
        if m.get(k) is not None:
            rows.append([k, m[k]])
    return s.add(table(["", "value"], rows))


# -- quality -------------------------------------------------------------------------------


def _reference_prefix(data: RunData) -> str:
    return "gbdt" if data.mode == "secureboost" else "lr"


def quality(data: RunData) -> Section:
    s = Section("quality", "Model quality on the test set")
    central = data.metrics.get("centralised", {})
    rows: list[list[object]] = []
    if "auc" in data.metrics:
        rows.append(["federated", data.metrics["auc"], data.metrics.get("ks", ""), data.metrics.get("gini", "")])
    rows += [[f"centralised {k}", v.get("auc"), v.get("ks"), v.get("gini")] for k, v in sorted(central.items())]
    if rows:
        s.add(table(["model", "AUC", "KS", "Gini"], rows))
    if data.test_scores is None:
        if data.mode == "horizontal":
            why = "the coordinator scores the holdout each round and keeps the figures, not per-row scores"
        elif data.viewer is not None:
            why = "this party holds no labels, so it has no test scores"
        else:
            why = "the run directory has no label holder's test scores (nodes/<bank>/test_scores.npz)"
        return s.add(para(f"No curves: {why}; only the published figures above.", "note"))
    y, score = data.test_scores
    p = curves.as_probability(score)
    models = {"federated": (y, score)}
    prefix = _reference_prefix(data)
    ref = data.reference_scores
    for key, label in REFERENCE_LABELS.items():
        name = f"{prefix}_{key}"
        if name in ref and "y_test" in ref:
            models[label] = (ref["y_test"], ref[name])
    s.add(
        gallery(
            [
                plots.roc_plot(models),
                plots.ks_plot(models),
                plots.score_distribution(y, p),
                plots.calibration_plot(y, p),
                plots.gains_plot(y, score),
            ]
        )
    )
    if not ref and data.viewer is None:
        s.add(para("No centralised curves: the run directory has no reference_scores.npz.", "note"))
    bands = curves.score_bands(y, p)
    s.add("<h3>Score bands (deciles of the federated score, riskiest first)</h3>")
    s.add(
        table(
            ["band", "p from", "p to", "rows", "bads", "bad rate", "cumulative bad rate"],
            [[b.band, b.low, b.high, b.rows, b.bads, b.bad_rate, b.cumulative_bad_rate] for b in bands],
        )
    )
    return s


# -- training ------------------------------------------------------------------------------


def training(data: RunData) -> Section:
    s = Section("training", "Training")
    hist = [h for h in data.metrics.get("history", []) if isinstance(h, dict)]
    if data.mode == "horizontal" or not hist:
        what = "see the horizontal section (per-round metrics)" if data.mode == "horizontal" else "no training history"
        return s.add(para(f"No per-epoch or per-tree curve for this run: {what}.", "note"))
    axis = "tree" if "tree" in hist[0] else "epoch"
    x = [float(h.get(axis, i)) for i, h in enumerate(hist)]
    losses = {k: [_num(h.get(k)) for h in hist] for k in ("train_loss", "val_loss") if k in hist[0]}
    marks: dict[str, float] = {}
    val = losses.get("val_loss")
    if val is not None and not np.all(np.isnan(val)):
        best = int(np.nanargmin(val))
        marks[f"best validation ({axis} {x[best]:g})"] = x[best]
    images = [plots.lines("Loss per " + axis, x, losses, xlabel=axis, ylabel="log-loss", marks=marks)]
    metric_keys = [k for k in ("val_auc", "val_ks") if k in hist[0]]
    if metric_keys:
        series = {k: [_num(h.get(k)) for h in hist] for k in metric_keys}
        images.append(
            plots.lines("Validation metric per " + axis, x, series, xlabel=axis, ylabel="metric", marks=marks)
        )
    s.add(gallery(images))
    note = f"{len(hist)} {axis}s recorded"
    if marks:
        note += f"; lowest validation loss at {axis} {x[int(np.nanargmin(val or [0]))]:g}"
    if axis == "tree" and data.metrics.get("trees") is not None:
        note += f"; the released model has {data.metrics['trees']} trees"
    elif data.metrics.get("epochs") is not None:
        note += f"; {data.metrics['epochs']} epochs trained"
    return s.add(para(note + ".", "note"))


# -- per party -----------------------------------------------------------------------------


def parties(data: RunData) -> Section:
    s = Section("parties", "Per party (only what each party may see)")
    published = data.metrics.get("feature_importance") or {}
    if not data.parties:
        return s.add(para("The ledger's run-start record names no parties.", "note"))
    for name, info in data.parties.items():
        s.add(f"<h3>{esc(name)} ({esc(info.get('role', '?'))})</h3>")
        facts = [[k, v] for k, v in info.items() if k != "egress_pubkey"]
        s.add(table(["", "value"], facts))
        images = []
        gains = feature_gains(published.get(name))
        if gains:
            images.append(
                plots.bars(
                    f"{name}: split importance by gain (published)", list(gains), list(gains.values()), xlabel="gain"
                )
            )
        model = data.models.get(name)
        if model is not None:
            coef = (model.get("model") or {}).get("coef")
            features = model.get("feature_names") or []
            if isinstance(coef, list) and len(coef) == len(features) and features:
                images.append(
                    plots.bars(
                        f"{name}: own weights (its model.json)", features, [float(c) for c in coef], xlabel="weight"
                    )
                )
        if images:
            s.add(gallery(images))
        if model is None and (data.run_dir / "nodes" / name / "model.json").exists():
            s.add(para(f"{name}'s own model part is not shown: it is private to {name}.", "note"))
        elif model is None:
            s.add(para(f"{name} released no model part of its own in this run.", "note"))
    return s


def feature_gains(published: object) -> dict[str, float]:
    """Per-feature gains from a party's published importance, whatever its nesting.

    SecureBoost publishes ``{"gain": {feature: g}, "split_count": {...}}`` for the host and
    ``{"guest": {...same...}, "host": {"gain": total, ...}}`` for the guest (the bank knows only
    the centre's totals); a flat ``{feature: value}`` is taken as is. Anything else: no chart.
    """
    if not isinstance(published, dict):
        return {}
    for candidate in (published.get("gain"), (published.get("guest") or {}).get("gain"), published):
        if isinstance(candidate, dict) and candidate and all(_is_number(v) for v in candidate.values()):
            return {str(k): float(v) for k, v in candidate.items()}
    return {}


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- compliance ----------------------------------------------------------------------------


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def fingerprint(hex_key: str) -> str:
    """SHA-256 of a public key's bytes, first 16 bytes in colon-separated hex (as on the CLI)."""
    try:
        raw = bytes.fromhex(hex_key)
    except ValueError:
        raw = hex_key.encode()
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def compliance(data: RunData) -> Section:
    s = Section("compliance", "Compliance")
    recs = data.records
    v = data.status.get("verification") or {}
    if v:
        verdict = "verified" if v.get("ok") else "NOT verified"
        cls = "ok" if v.get("ok") else "bad"
        s.add(
            f'<p>Ledger: <span class="{cls}">{esc(verdict)}</span> ({esc(v.get("records"))} records, '
            f"{esc(len(v.get('egress_logs', [])))} egress logs)</p>"
        )
        if v.get("errors"):
            s.add(table(["verification error"], [[e] for e in v["errors"]]))
    else:
        s.add(para("Ledger verdict: not recorded in status.json (run `fedcredit ledger verify`).", "note"))
    start = recs[0] if recs else None
    if start is None:
        return s.add(para("The ledger is empty.", "note"))
    t0 = _seconds(start.ts)
    # phases: consecutive step records sharing the part of the step name before '/'
    phases: list[list] = []
    prev = t0
    for r in recs:
        if r.kind != "step":
            continue
        step = str(r.payload.get("step", "?"))
        phase = step.split("/")[0]
        t = _seconds(r.ts)
        if phases and phases[-1][0] == phase:
            phases[-1][2] = t
        else:
            phases.append([phase, prev, t])
        prev = t
    if phases:
        s.add(gallery([plots.timeline([(p, a - t0, b - a) for p, a, b in phases])]))
    boundary: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in recs:
        for msg in r.payload.get("messages", []) if r.kind == "step" else []:
            b = boundary[(str(msg.get("sender")), str(msg.get("recipient")))]
            b[0] += 1
            b[1] += int(msg.get("size", 0))
    if boundary:
        s.add("<h3>What crossed each boundary (via the coordinator)</h3>")
        s.add(
            table(["from", "to", "messages", "bytes"], [[a, b, n, by] for (a, b), (n, by) in sorted(boundary.items())])
        )
    consents = [r.payload for r in recs if r.kind == "consent_check"]
    if consents:
        s.add("<h3>Consent</h3>")
        rows = []
        for c in consents:
            refused = c.get("refused") or {}
            reasons = ", ".join(f"{k}: {n}" for k, n in sorted(refused.items())) or "none"
            rows.append([c.get("bank"), c.get("purpose"), c.get("checked"), c.get("allowed"), reasons])
        s.add(table(["bank", "purpose", "checked", "allowed", "refused by reason"], rows))
    keys = [["coordinator (ledger signing)", fingerprint(str(start.payload.get("coordinator_pubkey", "")))]]
    for name, info in (start.payload.get("parties") or {}).items():
        if info.get("egress_pubkey"):
            keys.append([f"{name} (egress log)", fingerprint(str(info["egress_pubkey"]))])
    s.add("<h3>Key fingerprints (SHA-256 of the public key)</h3>", table(["key", "fingerprint"], keys, numeric=False))
    s.add(
        para(
            f"code version {start.payload.get('code_version', '?')}; scenario hash {start.payload.get('config_hash', '?')}",
            "note",
        )
    )
    return s


# -- horizontal ----------------------------------------------------------------------------


def horizontal(data: RunData) -> Section:
    s = Section("horizontal", "Horizontal rounds")
    if data.mode != "horizontal":
        return s.add(para(f"Not a horizontal run ({data.mode}): no rounds.", "note"))
    hist = [h for h in data.metrics.get("history", []) if isinstance(h, dict) and "round" in h]
    banks = data.metrics.get("banks") or {}
    if not hist:
        return s.add(para("No per-round history in metrics.json.", "note"))
    x = [float(h["round"]) for h in hist]
    images = []
    metric = {k: [_num(h.get(k)) for h in hist] for k in ("auc", "ks") if k in hist[0]}
    if metric:
        images.append(plots.lines("Global model per round (holdout)", x, metric, xlabel="round", ylabel="metric"))
    contributors = [_num(h.get("contributors", 0)) for h in hist]
    images.append(
        plots.lines(
            "Participation per round",
            x,
            {"contributing banks": contributors, "dropouts": [len(banks) - c for c in contributors]},
            xlabel="round",
            ylabel="banks",
        )
    )
    s.add(gallery(images))
    lost: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"dropout": [], "update_rejected": []})
    for r in data.records:
        if r.kind in ("dropout", "update_rejected"):
            lost[str(r.payload.get("party"))][r.kind].append(int(r.payload.get("round") or 0))
    rows = [
        [
            b,
            n,
            ", ".join(map(str, lost[b]["dropout"])) or "none",
            ", ".join(map(str, lost[b]["update_rejected"])) or "none",
        ]
        for b, n in sorted(banks.items())
    ]
    s.add(
        "<h3>Per bank (dropouts and rejected updates from the ledger)</h3>",
        table(["bank", "training rows", "dropped out in rounds", "update rejected in rounds"], rows),
    )
    return s


# -- settings and versions -----------------------------------------------------------------


def settings(data: RunData) -> Section:
    s = Section("settings", "Effective settings and software versions")
    if data.scenario_text is None:
        s.add(para("The run directory has no scenario.toml: effective settings unknown.", "note"))
    else:
        from fedcredit import config

        digest = hashlib.sha256(data.scenario_text.encode()).hexdigest()
        match = digest == data.run_start.get("config_hash")
        s.add(
            f"<p>scenario.toml {'matches' if match else 'does NOT match'} the ledger's config hash: "
            f'<span class="{"ok" if match else "bad"}">{esc(digest[:16])}…</span></p>'
        )
        scenario = config.loads(data.scenario_text)
        rows: list[list[object]] = []
        for name in scenario.sections:
            try:
                cls = config.section_type(name)
                for d in config.describe(cls, scenario.settings(name)):
                    rows.append([f"[{name}] {d.key}", repr(d.default)])
            except config.ConfigError as exc:
                rows.append([f"[{name}]", f"unreadable: {exc}"])
        rows += [[f"[parties.{p.name}]", f"role={p.role} data={p.data}"] for p in scenario.parties]
        s.add(table(["setting", "effective value"], rows, numeric=False))
    versions = [["python", sys.version.split()[0]], ["platform", platform.platform()]]
    for pkg in PACKAGES:
        try:
            versions.append([pkg, metadata.version(pkg)])
        except metadata.PackageNotFoundError:
            versions.append([pkg, "not installed"])
    s.add("<h3>Software (where the report was built)</h3>", table(["package", "version"], versions, numeric=False))
    return s
