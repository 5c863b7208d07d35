"""Shared fixtures: Flower/Ray state in temp dirs, telemetry off, small real-data subsets."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_HOME", tempfile.mkdtemp(prefix="fedcredit-test-flwr-"))
os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="fcray-", dir="/tmp"))
