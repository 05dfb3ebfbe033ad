"""Subprocess helpers shared by the benchmark modules.

Two rules keep a benchmark run from leaving anything behind:
- every command has a timeout (`run`), and a command that overruns is killed
  by `subprocess.run` itself (it kills the child and waits for it);
- every long-lived process we start is a `Managed` process, stopped by its
  own PID (SIGTERM, then SIGKILL after a grace period) and always waited
  for, never found again by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


def run(cmd: Sequence[str], timeout_s: float, check: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion within `timeout_s` seconds, capturing text output.

    Raises BenchError if it fails (and `check`) or overruns."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s,
                             env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout_s:g} s: {' '.join(cmd)}") from None
    if check and res.returncode != 0:
        err = (res.stderr or res.stdout).strip().splitlines()
        raise BenchError(f"exit {res.returncode}: {' '.join(cmd)}: {err[-1] if err else ''}")
    return res


def in_netns(ns: str, *argv: str) -> list[str]:
    """`argv` as a command that runs inside the named network namespace."""
    return ["ip", "netns", "exec", ns, *argv]


class Managed:
    """A long-lived child process, stopped by PID and reaped.

    Output goes to `log_path` (or is discarded) so a chatty child can never
    block on a full pipe."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "wb") if log_path else None  # noqa: SIM115
        out: IO[bytes] | int = self._log if self._log else subprocess.DEVNULL
        self.popen = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Exit status, or None if still running after `timeout_s` seconds."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Signal our child by PID, escalate to SIGKILL after `grace_s`; returns its status."""
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(grace_s) is None:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_until(pred: Callable[[], object], timeout_s: float, interval_s: float = 0.1,
               what: str = "condition") -> None:
    """Poll `pred` until it returns something true; BenchError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
