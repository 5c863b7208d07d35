"""The canary registry stays runnable: every planted defect still applies to the current code and
names tests that exist. (Running the canaries themselves takes minutes: ``simulations/canaries.py``.)

Other changes to the code can make a canary stale: its text no longer occurs, or the test it names
was renamed. This fast check fails in ``make test`` when that happens, instead of the canary
silently counting as missed (or, worse, being deleted).
"""

from __future__ import annotations

import re
from pathlib import Path

from simulations.canaries import CANARIES, ROOT, _uncaught


def test_at_least_twelve_canaries_with_unique_names():
    names = [c.name for c in CANARIES]
    assert len(names) >= 12 and len(set(names)) == len(names)


def test_every_canary_applies_exactly_and_names_existing_tests():
    problems = []
    for c in CANARIES:
        for rel, old, new, count in c.edits():
            path = ROOT / rel
            if not path.is_file():
                problems.append(f"{c.name}: {rel} does not exist")
                continue
            found = path.read_text().count(old)
            if found != count or old == new:
                problems.append(f"{c.name}: {old!r} occurs {found} times in {rel}, expected {count}")
        for node in c.tests:
            file, _, rest = node.partition("::")
            func = re.split(r"[\[:]", rest.split("::")[-1])[0]
            text = (ROOT / file).read_text() if (ROOT / file).is_file() else ""
            if not re.search(rf"^\s*def {re.escape(func)}\(", text, re.M):
                problems.append(f"{c.name}: test {node} not found")
        if not c.tests or not c.why:
            problems.append(f"{c.name}: names no test or says nothing about the defect")
    assert not problems, problems


def test_a_canary_is_caught_only_when_every_named_test_failed():
    tests = ["tests/a.py::test_x", "tests/b.py::test_y"]
    assert _uncaught(tests, ["tests/a.py::test_x", "tests/b.py::test_y[case-1]"]) == []
    assert _uncaught(tests, ["tests/a.py::test_x"]) == ["tests/b.py::test_y"]
    assert _uncaught(tests, ["tests/a.py::test_x_other"]) == tests
    assert Path(ROOT / "simulations" / "canaries.py").is_file()
