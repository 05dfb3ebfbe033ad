"""Run the real vswitchd as a subprocess for end-to-end tests.

``RunningDaemon`` writes a TOML config into a temp dir (its own management
socket, metrics off unless ``metrics="host:port"`` is given), starts
``python -m vswitchd.daemon``, and waits for READY=1 on its own
NOTIFY_SOCKET listener, the way systemd would; a daemon that is not ready in
time is stopped, so a failed start leaves nothing running.  ``ctl()`` runs
the real ``vswitchctl``, ``scrape()`` reads its ``/metrics``.  ``stop()``
sends SIGTERM and returns the exit code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.listeners import http_get

ROOT = Path(__file__).resolve().parents[2]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def render_config(ports: dict[str, dict[str, Any]], socket_path: str,
                  switch: dict[str, Any] | None = None, metrics: str = "",
                  acls: dict[str, list[dict[str, Any]]] | None = None,
                  evpn: dict[str, Any] | None = None) -> str:
    lines = ["[switch]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in (switch or {}).items()]
    lines += ["", "[management]", f"socket = {json.dumps(socket_path)}", "",
              "[metrics]", f"listen = {json.dumps(metrics)}", ""]
    for name, rules in (acls or {}).items():
        lines += [f"[acls.{name}]", "rules = ["]
        lines += [f"  {toml_value(rule)}," for rule in rules]
        lines += ["]", ""]
    for name, keys in ports.items():
        lines.append(f"[ports.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
        lines.append("")
    if evpn is not None:
        lines.append("[evpn]")
        lines += [f"{k} = {toml_value(v)}" for k, v in evpn.items()]
    return "\n".join(lines)


class RunningDaemon:
    def __init__(self, tmp: Path, ports: dict[str, dict[str, Any]],
                 switch: dict[str, Any] | None = None, metrics: str = "",
                 acls: dict[str, list[dict[str, Any]]] | None = None,
                 netns: str | None = None, evpn: dict[str, Any] | None = None,
                 extra_toml: str = "") -> None:
        self.tmp = tmp
        self.extra_toml = extra_toml    # appended as is ([attach.NAME] rules, for one)
        self.evpn = evpn                # an [evpn] section, or none
        self.netns = netns              # run the daemon inside this namespace (a "host")
        self.socket = str(tmp / "vswitchd.sock")
        self.config_path = tmp / "vswitchd.toml"
        self.log_path = tmp / "vswitchd.log"
        self.switch = switch
        self.ports = ports
        self.metrics = metrics          # [metrics] listen; "" is off
        self.acls = acls
        self.write_config(ports)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, ports: dict[str, dict[str, Any]] | None = None, *,
                     metrics: str | None = None,
                     acls: dict[str, list[dict[str, Any]]] | None = None,
                     extra_toml: str | None = None) -> None:
        """Rewrites the config file (for a reload); what is not given stays."""
        if extra_toml is not None:
            self.extra_toml = extra_toml
        if ports is not None:
            self.ports = ports
        if metrics is not None:
            self.metrics = metrics
        if acls is not None:
            self.acls = acls
        self.config_path.write_text(
            render_config(self.ports, self.socket, self.switch, self.metrics, self.acls,
                          self.evpn) + "\n" + self.extra_toml)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics}/metrics"

    def scrape(self, timeout_s: float = 10.0) -> bytes:
        """GET /metrics, retried until the exporter answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return http_get(self.metrics_url)
            except OSError as exc:      # not listening yet
                if time.monotonic() >= deadline:
                    raise AssertionError(f"{self.metrics_url} not served within {timeout_s} s "
                                         f"({exc!r}):\n{self.log()}") from None
            time.sleep(0.2)

    def start(self, timeout_s: float = 30.0) -> None:
        # 30 s: a daemon creating 64 TAPs on a busy 2-CPU machine needs it.
        notify_path = str(self.tmp / "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify_path)
        listener.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        # `ip netns exec` execs the daemon: same pid, signals reach it.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "vswitchd.daemon", "--config", str(self.config_path),
             "--log-level", "debug"], cwd=ROOT, env=env, stdout=self._log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"vswitchd exited {self.proc.returncode}:\n{self.log()}")
                try:
                    if b"READY=1" in listener.recv(4096):
                        return
                except TimeoutError:
                    continue
            raise RuntimeError(f"vswitchd not ready in {timeout_s}s:\n{self.log()}")
        except BaseException:
            self.stop()         # a failed start leaves nothing running
            raise
        finally:
            listener.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ctl_raw(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vswitchd.cli", "--socket", self.socket,
                               *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout_s)

    def ctl(self, *args: str) -> Any:
        r = self.ctl_raw("--json", *args)
        if r.returncode != 0:
            raise AssertionError(f"vswitchctl {' '.join(args)} failed: {r.stderr}")
        return json.loads(r.stdout)

    def port(self, name: str) -> dict[str, Any]:
        return next(p for p in self.ctl("show")["ports"] if p["name"] == name)

    def wait_ports_up(self, *names: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ports = {p["name"]: p for p in self.ctl("show")["ports"]}
            if all(ports.get(n, {}).get("link") == "up" for n in names):
                return
            time.sleep(0.1)
        raise AssertionError(f"ports {names} not up: {self.ctl('show')}")

    def wait_log(self, text: str, count: int = 1, timeout_s: float = 10.0) -> None:
        """Waits for ``text`` to be in the daemon's log ``count`` times: what
        a SIGHUP reload did shows only there."""
        deadline = time.monotonic() + timeout_s
        while self.log().count(text) < count:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not logged {count} times within {timeout_s} s:"
                                     f"\n{self.log()}")
            time.sleep(0.1)

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc
