"""Scripts under simulations/ run as ``python simulations/X.py``, which puts that directory first
on ``sys.path``: a file there named like a standard-library module replaces it for every script in
the directory (a plain ``simulations/platform.py`` once broke attacks.py and canaries.py).

The one such file allowed is an entry point that, imported under the standard library's name,
puts the real module in its place (``simulations/platform.py``, the command issue 19 names); so
the check is behavioural: with the directory first on ``sys.path``, ``import <name>`` must give
the standard library's module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _named_like_stdlib(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.py") if p.stem in sys.stdlib_module_names)


def _imported_from(directory: Path, name: str) -> Path:
    """Where ``import name`` finds the module when ``directory`` is first on sys.path, as it is
    for a script run from there."""
    code = f"import sys; sys.path.insert(0, {str(directory)!r}); import {name}; print({name}.__file__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip()).resolve()


def test_no_script_directory_shadows_a_standard_library_module(tmp_path):
    (tmp_path / "platform.py").write_text("")  # positive control: a plain file of that name shadows
    assert _named_like_stdlib(tmp_path) == ["platform"]
    assert _imported_from(tmp_path, "platform") == (tmp_path / "platform.py").resolve()
    for directory in (ROOT / "simulations", ROOT / "simulations" / "bench"):
        for name in _named_like_stdlib(directory):
            where = _imported_from(directory, name)
            assert where.parent == STDLIB, f"{directory}/{name}.py shadows the standard library's {name} ({where})"
