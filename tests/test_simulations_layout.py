"""Scripts under simulations/ run as ``python simulations/X.py``, which puts that directory first
on ``sys.path``: a file there named like a standard-library module would replace it for every
script in the directory (a ``simulations/platform.py`` once broke attacks.py and canaries.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shadowing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.py") if p.stem in sys.stdlib_module_names)


def test_no_script_directory_shadows_a_standard_library_module(tmp_path):
    planted = tmp_path / "platform.py"  # positive control: the check sees a shadowing name
    planted.write_text("")
    assert _shadowing(tmp_path) == ["platform.py"]
    for directory in (ROOT / "simulations", ROOT / "simulations" / "bench"):
        assert _shadowing(directory) == [], f"{directory} shadows the standard library"
