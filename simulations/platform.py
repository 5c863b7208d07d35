"""``python simulations/platform.py --firms 4000000 --banks 10``: the command issue 19 names.

The simulation itself is :mod:`simulations.credit_platform` (read that). This file only exists so
the named command works, and it has to be careful: Python puts a script's own directory first on
``sys.path``, so a ``platform.py`` here *shadows the standard library's* ``platform`` module for
every script run from ``simulations/`` (numpy, Ray and pytest all ``import platform``). Hence:

* run as a script, it takes its own directory off ``sys.path`` before importing anything else,
  then runs :func:`simulations.credit_platform.main`;
* imported under the name ``platform`` (by another script in this directory), it puts the
  standard library's module in its place, so nothing else notices it exists.
"""

from __future__ import annotations

import os
import sys


def _drop_own_directory() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.path.insert(0, os.path.dirname(here))  # the repository root: `simulations` as a package


def _become_the_standard_library_module() -> None:
    import importlib.util
    import sysconfig

    path = os.path.join(sysconfig.get_paths()["stdlib"], "platform.py")
    spec = importlib.util.spec_from_file_location("platform", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a Python without platform.py
        raise ImportError(f"the standard library's platform module is not at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["platform"] = module  # the import system returns what sys.modules holds
    spec.loader.exec_module(module)


if __name__ == "__main__":
    _drop_own_directory()
    from simulations.credit_platform import main

    sys.exit(main())
elif __name__ == "platform":
    _become_the_standard_library_module()
