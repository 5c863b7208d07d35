"""``python -m fedcredit.deploy.supernode [OPTIONS] -- FLOWER-SUPERNODE-ARGS``: Flower's SuperNode, hardened.

Flower's own ``flower-supernode``, started in this process with two node-side additions that the
open-source SuperLink gives no supported way to get:

**Bundle check.** A SuperNode installs and imports the app bundle (FAB) that the SuperLink
serves; the bundle's files come first on ``sys.path``, so a bundle carrying its own
``parties/client_app.py`` would run next to the node. Flower's ``--trusted-entities`` refuses
unsigned bundles, but the open-source SuperLink does not sign them ("App verification is not
supported by the connected SuperLink"). This launcher plugs a check into that same refusal path
(:func:`flwr.supernode.start_client_internal._verify_fab`): before a run's bundle is stored, it
must carry no file but ``pyproject.toml`` (and Flower's ``.info/CONTENT`` manifest), name the
installed ``parties.client_app:app`` as its ClientApp and -- when the operator pinned one with
``--pin-fab-hash`` -- have exactly that SHA-256. A refused bundle is never stored or installed,
no ClientApp process starts, the message gets Flower's ``INVALID_FAB`` error reply, and the
coordinator stops the run naming this node.

**Idle polling.** The SuperNode sleeps a fixed 3 s whenever a poll of the SuperLink finds no
message, and 0.5 s between checks for a ClientApp's reply
(``flwr/supernode/start_client_internal.py``; no setting in Flower 1.42). Every protocol step
pays that once per node. ``--poll-seconds`` caps every sleep of that one module (its module-level
``time`` is replaced by a proxy; nothing else in Flower is touched). 0.2 s costs a few more
small HTTPS requests per second on an idle node.

**Warm ClientApp starts.** ``--warm-clientapp`` starts the SuperNode's SuperExec through
:mod:`fedcredit.deploy.superexec`, which forks each per-message ``flwr-clientapp`` from a process
that imported Flower once (``--preload`` modules too), instead of starting a new interpreter.

All three are applied by patching attributes of that module only, so an upgrade of Flower that
renames them fails loudly at start-up (checked in :func:`install`) rather than silently.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import subprocess
import sys
import time as _time
import zipfile
from collections.abc import Callable
from typing import Any

import tomllib

log = logging.getLogger(__name__)
ALLOWED_FILES = frozenset({"pyproject.toml", ".info/CONTENT"})
CLIENT_COMPONENT = "parties.client_app:app"
MARK = "fedcredit-bundle-check"  # our entry in a FAB's verifications: "" = passed, else the problem


class BundleRefused(ValueError):
    """The app bundle carries code, names another ClientApp, or is not the pinned one."""


def check_bundle(content: bytes, pinned_sha256: str | None = None, client_component: str = CLIENT_COMPONENT) -> None:
    """Raise :class:`BundleRefused` naming the problem unless the bundle is code-free and pinned."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            names = z.namelist()
            extra = sorted(set(names) - ALLOWED_FILES)
            if extra:
                raise BundleRefused(f"bundle carries files besides pyproject.toml: {extra[:5]}")
            doc = tomllib.loads(z.read("pyproject.toml").decode())
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BundleRefused(f"bundle is not a readable Flower app: {exc}") from None
    comps = doc.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    if comps.get("clientapp") != client_component:
        raise BundleRefused(
            f"bundle names ClientApp {comps.get('clientapp')!r}, not the installed {client_component!r}"
        )
    digest = hashlib.sha256(content).hexdigest()
    if pinned_sha256 and digest != pinned_sha256.lower():
        raise BundleRefused(f"bundle sha256 {digest} is not the pinned {pinned_sha256}")


class _CappedSleep:
    """Stands in for the ``time`` module inside one Flower module: every sleep at most ``cap`` s."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(float(seconds), self.cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


class _WarmSuperExec:
    """Stands in for ``subprocess`` inside one Flower module: ``flower-superexec`` becomes ours."""

    def __init__(self, preload: list[str]) -> None:
        self.prefix = [sys.executable, "-m", "fedcredit.deploy.superexec"]
        for mod in preload:
            self.prefix += ["--preload", mod]

    def Popen(self, command: list[str], *args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 - as subprocess
        if command and command[0] == "flower-superexec":
            command = [*self.prefix, "--", *command[1:]]
        return subprocess.Popen(command, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


def install(
    *,
    poll_seconds: float | None,
    pinned_sha256: str | None,
    check: bool = True,
    warm_preload: list[str] | None = None,
) -> None:
    """Patch ``flwr.supernode.start_client_internal`` (see the module docstring)."""
    from flwr.supernode import start_client_internal as sci

    for attr in ("time", "subprocess", "_pull_and_store_message", "_verify_fab"):
        if not hasattr(sci, attr):
            raise RuntimeError(f"this Flower version has no start_client_internal.{attr}; update fedcredit")
    if poll_seconds is not None:
        sci.time = _CappedSleep(poll_seconds)  # type: ignore[assignment]
    if warm_preload is not None:
        sci.subprocess = _WarmSuperExec(warm_preload)  # type: ignore[assignment]
    if not check:
        return
    original_pull: Callable[..., Any] = sci._pull_and_store_message
    original_verify: Callable[..., bool] = sci._verify_fab

    def pull(**kw: Any) -> Any:
        inner_get_fab = kw["get_fab"]
        operator_entities = bool(kw.get("trusted_entities"))

        def get_fab(fab_hash: str, run_id: int) -> Any:
            fab = inner_get_fab(fab_hash, run_id)
            try:
                check_bundle(fab.content, pinned_sha256)
                problem = ""
            except BundleRefused as exc:
                problem = str(exc)
            extra = {MARK: problem}
            if not operator_entities:  # Flower's "signed?" gate only matters for real signatures
                extra["valid_license"] = "checked by fedcredit (no signature)"
            fab.verifications = {**fab.verifications, **extra}
            return fab

        kw["get_fab"] = get_fab
        if not operator_entities:
            kw["trusted_entities"] = {MARK: ""}  # makes Flower call _verify_fab (below)
        return original_pull(**kw)

    def verify(fab: Any, trusted_entities: dict[str, str]) -> bool:
        problem = fab.verifications.get(MARK)
        if problem is None:
            return original_verify(fab, trusted_entities)
        if problem:
            log.error("refused the app bundle %s: %s", fab.hash_str, problem)
            print(f"fedcredit: refused the app bundle {fab.hash_str}: {problem}", file=sys.stderr, flush=True)
            return False
        real = {k: v for k, v in trusted_entities.items() if k != MARK}
        if not real:
            return True
        verifs = {k: v for k, v in fab.verifications.items() if k != MARK}
        return original_verify(type(fab)(fab.hash_str, fab.content, verifs), real)

    sci._pull_and_store_message = pull  # type: ignore[assignment]
    sci._verify_fab = verify


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, flower = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else ([], argv)
    p = argparse.ArgumentParser(prog="python -m fedcredit.deploy.supernode", description=__doc__.split("\n")[0])
    p.add_argument("--poll-seconds", type=float, default=0.2, help="cap on the SuperNode's idle sleeps (Flower: 3 s)")
    p.add_argument("--pin-fab-hash", default=None, help="SHA-256 of the only app bundle this node accepts")
    p.add_argument(
        "--no-bundle-check", action="store_true", help="accept any bundle (only for nodes without a node service)"
    )
    p.add_argument("--warm-clientapp", action="store_true", help="fork ClientApps from a warm zygote")
    p.add_argument("--preload", action="append", default=[], help="module the zygote imports once")
    args, unknown = p.parse_known_args(ours)  # anything else before "--" is Flower's too
    install(
        poll_seconds=args.poll_seconds,
        pinned_sha256=args.pin_fab_hash,
        check=not args.no_bundle_check,
        warm_preload=args.preload if args.warm_clientapp else None,
    )
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *unknown, *flower]
    flower_supernode()


if __name__ == "__main__":
    main()
