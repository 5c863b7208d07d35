"""``python -m fedcredit.deploy.superexec [--preload MOD] -- FLOWER-SUPEREXEC-ARGS``: warm ClientApp starts.

Flower's SuperExec starts one ``flwr-clientapp`` process per message (``SubprocessExecutor``):
a fresh interpreter that imports Flower (~0.6 CPU-s, several seconds of wall time on a loaded
2-core machine) before it forwards a message that takes milliseconds. This launcher keeps the
same per-message process -- its own address space, Flower's own ``flwr_clientapp()`` entry
point, token and Runtime API as before -- but forks it from a *zygote*: a single-threaded process
that imported Flower's ClientApp runtime (and the modules named by ``--preload``, e.g. the
forwarding ``parties.client_app``) once, before anything started a thread. Every other task type
(and every other part of the SuperExec) is Flower's, unchanged.

A module named by ``--preload`` is already in ``sys.modules`` when Flower loads the app, so Flower
uses the installed module even if a bundle carried a file of the same name (bundles with code
are refused before this point anyway: :mod:`fedcredit.deploy.supernode`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from typing import Any


def _zygote(reader: int, preload: list[str]) -> None:
    """Fork a ``flwr-clientapp`` for every argv line read from ``reader``; exit at EOF."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp

    for mod in preload:
        importlib.import_module(mod)
    with os.fdopen(reader, "r") as lines:
        for line in lines:
            argv = json.loads(line)
            if os.fork() == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = 0
                try:
                    sys.argv = ["flwr-clientapp", *argv]
                    flwr_clientapp()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - reported, then this child ends
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
    os._exit(0)


class Zygote:
    """The forking process: :meth:`launch` starts one ``flwr-clientapp``; :meth:`close` ends it."""

    def __init__(self, pid: int, pipe: Any) -> None:
        self.pid, self._pipe = pid, pipe

    def launch(self, argv: list[str]) -> None:
        self._pipe.write(json.dumps(argv) + "\n")
        self._pipe.flush()

    def close(self) -> None:
        self._pipe.close()


def start_zygote(preload: list[str]) -> Zygote:
    """Fork the zygote (call before any thread starts)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        _zygote(r, preload)
    os.close(r)
    return Zygote(pid, os.fdopen(w, "w", buffering=1))


def install(launch: Any) -> None:
    """Route ClientApp launches of Flower's ``SubprocessExecutor`` to the zygote."""
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import subprocess_executor as se

    original = se.SubprocessExecutor.launch

    def warm_launch(self: Any, spec: Any) -> Any:
        if spec.task_type != TaskType.CLIENT_APP or spec.runtime_dependency_install:
            return original(self, spec)
        argv = [se.TASK_TYPE_TO_APPIO_API_ADDRESS_ARG[spec.task_type], spec.runtime_api_address, "--token", spec.token]
        if spec.insecure:
            argv.append("--insecure")
        elif spec.root_certificates_path is not None:
            argv += ["--root-certificates", spec.root_certificates_path]
        if spec.parent_pid is not None:
            argv += ["--parent-pid", str(spec.parent_pid)]
        launch(argv)
        return se.LaunchResult.accepted()

    se.SubprocessExecutor.launch = warm_launch  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, flower = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else ([], argv)
    p = argparse.ArgumentParser(prog="python -m fedcredit.deploy.superexec", description=__doc__.split("\n")[0])
    p.add_argument("--preload", action="append", default=[], help="module to import once in the zygote")
    args, unknown = p.parse_known_args(ours)
    zygote = start_zygote(args.preload)
    install(zygote.launch)
    from flwr.supercore.cli.flower_superexec import flower_superexec

    sys.argv = ["flower-superexec", *unknown, *flower]
    flower_superexec()


if __name__ == "__main__":
    main()
