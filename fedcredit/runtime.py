"""Process-level settings for running Flower safely on a shared machine.

Flower and Ray write state under the user's home and phone home by default; every fedcredit
entry point that starts Flower calls :func:`flower_environment` first so state goes to a
temporary (or run-specific) directory and telemetry is off.
"""

from __future__ import annotations

import os
import tempfile
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
    return base
