"""Run every attack case against real parties and say what each one achieved.

    .venv/bin/python simulations/attacks.py [--only SUBSTRING] [--out runs/attacks]

One line per case: refused/detected (by whom, at which step) or NOT CAUGHT, and whether any
protected value reached the attacker. The last line is JSON:
``{"attacks": N, "refused_or_detected": N, "leaked": 0, "within_bound": ..., "failed": [...]}``.
A bounded channel (documented in docs/protocols/threat-model.md) counts as handled when the
measured leakage is within its stated bound; ``leaked`` counts only leaks beyond a documented
bound, ``bounded_leaks_within_bound`` the bounded channels that did carry something. Exit status 1 if any case leaked or went unnoticed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulations.attack_cases import AttackResult, load_all  # noqa: E402


def handled(r: AttackResult) -> bool:
    """Refused or detected with nothing leaked, or a bounded channel measured within its bound.

    A bounded channel (``within_bound`` not None) may leak up to its documented bound.
    """
    if r.within_bound is not None:
        return bool(r.within_bound)
    return r.refused_or_detected and not r.leaked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--out", type=Path, default=None, help="keep each case's run directory here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    cases = {n: f for n, f in sorted(load_all().items()) if args.only in n}
    results: list[AttackResult] = []
    with tempfile.TemporaryDirectory(prefix="fedcredit-attacks-") as tmp:
        base = args.out or Path(tmp)
        for name, case in cases.items():
            work = base / name.replace("/", "__")
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            r = case(work)
            verdict = (
                "refused/detected" if r.refused_or_detected else ("within bound" if r.within_bound else "NOT CAUGHT")
            )
            by = f" by {r.by} at {r.step}" if r.refused_or_detected else ""
            print(
                f"{name:<52} {verdict}{by}; leaked={'YES' if r.leaked else 'no'}"
                f"{'; ' + r.bound if r.bound else ''} ({time.perf_counter() - t0:.1f} s) -- {r.detail}"
            )
            results.append(r)
    failed = [r.name for r in results if not handled(r)]
    summary = {
        "attacks": len(results),
        "refused_or_detected": sum(r.refused_or_detected for r in results),
        "within_bound": sum(bool(r.within_bound) for r in results if not r.refused_or_detected),
        # leaks beyond what the threat model documents (must be 0) vs. bounded channels within their bound
        "leaked": sum(r.leaked and not r.within_bound for r in results),
        "bounded_leaks_within_bound": sum(bool(r.leaked and r.within_bound) for r in results),
        "failed": failed,
    }
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
