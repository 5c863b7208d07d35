"""Process-level settings for running Flower safely on a shared machine, and where runs log.

Flower and Ray write state under the user's home and phone home by default; every fedcredit
entry point that starts Flower calls :func:`flower_environment` first so state goes to a
temporary (or run-specific) directory and telemetry is off.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def flower_environment(base: Path | None = None) -> Path:
    """Point FLWR_HOME and RAY_TMPDIR at ``base`` (a fresh temp dir if None); return it."""
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="fedcredit-flwr-"))
    base.mkdir(parents=True, exist_ok=True)
    os.environ["FLWR_HOME"] = str(base / "flwr-home")
    # Ray's socket paths must stay short (< 108 bytes): keep its tmp dir near the root.
    ray_tmp = Path(tempfile.mkdtemp(prefix="fcray-", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(ray_tmp)
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # keep Ray's "future versions will stop overriding accelerator env vars" tip off the screen
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    return base


@contextmanager
def run_log(out: Path, *, terminal_level: int = logging.WARNING) -> Iterator[Path]:
    """Send the run's INFO lines to ``out/run.log``; the terminal keeps only ``terminal_level``+.

    Every relay step logs one INFO line (a 30-tree run: ~200 lines); they belong in the run's
    directory next to its ledger, not on the screen where the progress display is. Flower's own
    logger (which has its own console handler) is treated the same way. Restores the handlers'
    levels on exit, so a caller's logging set-up is unchanged afterwards.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    from flwr.common import logger as _flwr_logger  # noqa: F401 - creates Flower's console handler, quieted below

    root = logging.getLogger()
    flwr = logging.getLogger("flwr")
    saved: list[tuple[logging.Handler, int]] = []
    for handlers, floor in ((root.handlers, terminal_level), (flwr.handlers, max(terminal_level, logging.ERROR))):
        # Flower warns on every run that run_simulation is deprecated: in run.log, not on screen
        for h in handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                saved.append((h, h.level))
                h.setLevel(max(h.level, floor))
    saved_root_level = root.level
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    flwr.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        flwr.removeHandler(handler)
        handler.close()
        root.setLevel(saved_root_level)
        for h, level in saved:
            h.setLevel(level)
