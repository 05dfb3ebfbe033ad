"""The exporter end to end: the real daemon, real TAPs, a real Prometheus.

The daemon runs as a subprocess on its own config, management socket and
metrics port; its TAPs live in namespaces from the shared `netns` fixture,
deleted by exact name.  A real Prometheus server (Debian package
`prometheus`) scrapes it every second; the test reads the result back from
Prometheus's query API, so names, types and the text format are checked by
the consumer that matters.

Needs root, /dev/net/tun, `ip`, `ping`, `/usr/bin/prometheus` and `promtool`:
without them the tests skip, and FAIL when CI=true.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vswitchd.fastpath import DROP_REASONS

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("require_root")]

PROMETHEUS = "/usr/bin/prometheus"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=60)


def need(path: str | None, what: str) -> str:
    if path is None or not os.path.exists(path):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} not found (CI=true: refusing to skip)")
        pytest.skip(f"{what} not found (apt-get install prometheus)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return bytes(r.read())


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float,
              diagnose: Callable[[], str] = lambda: "") -> Any:
    """Polls ``probe`` until it returns something true; returns that."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
            last = got
        except OSError as exc:      # not listening yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s (last: {last!r})\n{diagnose()}")


class Daemon:
    """``python -m vswitchd.daemon`` on a config of its own; READY=1 read from
    a NOTIFY_SOCKET as systemd would."""

    def __init__(self, tmp: Path, ports: dict[str, dict[str, Any]], metrics_port: int) -> None:
        self.tmp = tmp
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.config = tmp / "vswitchd.toml"
        lines = ["[management]", f"socket = {json.dumps(str(tmp / 'sock'))}", "",
                 "[metrics]", f'listen = "127.0.0.1:{metrics_port}"', ""]
        for name, keys in ports.items():
            lines.append(f"[ports.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = tmp / "vswitchd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.tmp / "notify"))
        notify.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=str(self.tmp / "notify"))
        with open(self.log_path, "wb") as log:
            # cwd=tmp: the vswitchd package comes from the environment (the
            # editable install, or PYTHONPATH), not from whatever cwd holds.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vswitchd.daemon", "--config", str(self.config)],
                cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"vswitchd exited {self.proc.returncode}:\n{self.log()}")
                try:
                    if b"READY=1" in notify.recv(4096):
                        return
                except TimeoutError:
                    continue
            raise AssertionError(f"vswitchd not ready within {timeout_s} s:\n{self.log()}")
        finally:
            notify.close()

    def metrics(self) -> bytes:
        return wait_for("the daemon serving /metrics (is MetricsServer wired into "
                        "Daemon.run?)", lambda: http_get(self.metrics_url), 10, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait; returns the exit code (None if it was not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"vswitchd ignored SIGTERM:\n{self.log()}") from None
        return proc.returncode


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory: a started daemon; stopped afterwards (exit code checked by
    the test), and its root-namespace TAPs removed by exact name if it left
    any behind."""
    started: list[tuple[Daemon, list[str]]] = []

    def make(ports: dict[str, dict[str, Any]]) -> Daemon:
        d = Daemon(tmp_path, ports, free_port())
        started.append((d, [p["ifname"] for p in ports.values() if "netns" not in p]))
        d.start()
        return d

    yield make
    for d, root_taps in started:
        d.stop()
        for ifname in root_taps:
            sh("ip", "link", "del", "dev", ifname, check=False)


def promtool_check(text: bytes) -> subprocess.CompletedProcess[str]:
    promtool = need(shutil.which("promtool"), "promtool")
    return subprocess.run([promtool, "check", "metrics"], input=text.decode(),
                          capture_output=True, text=True, timeout=30)


class Prometheus:
    """A Prometheus server scraping one target every second, on a free port
    and a throwaway TSDB; stopped by its PID."""

    def __init__(self, tmp: Path, target: str) -> None:
        self.tmp = tmp / "prometheus"
        self.tmp.mkdir()
        (self.tmp / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: vswitchd\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = self.tmp / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [need(PROMETHEUS, "prometheus"), f"--config.file={self.tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.tmp / 'data'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)

    def query(self, promql: str) -> list[dict[str, Any]]:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
        reply = json.loads(http_get(f"{self.url}/api/v1/query?"
                                    + urllib.parse.urlencode({"query": promql})))
        assert reply["status"] == "success", reply
        return list(reply["data"]["result"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    servers: list[Prometheus] = []

    def make(target: str) -> Prometheus:
        p = Prometheus(tmp_path, target)
        servers.append(p)
        p.start()
        return p

    yield make
    for p in servers:
        p.stop()


def tap_in(ns: str) -> dict[str, Any]:
    return {"type": "tap", "ifname": f"vm{ns[-8:]}", "netns": ns}


def in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *cmd, check=check)


def test_prometheus_scrapes_port_counters_of_a_ping(daemon, netns, prometheus):
    a, b = netns(), netns()
    d = daemon({"a": tap_in(a), "b": tap_in(b)})
    for ns, ip in ((a, "10.78.0.1/24"), (b, "10.78.0.2/24")):
        in_ns(ns, "ip", "addr", "add", ip, "dev", f"vm{ns[-8:]}")
        in_ns(ns, "ip", "link", "set", f"vm{ns[-8:]}", "up")
    # The first pings may go while the daemon still sees the link down.
    wait_for("ping from a to b", lambda: in_ns(a, "ping", "-n", "-q", "-c", "3", "-i", "0.2",
                                               "-W", "1", "10.78.0.2", check=False
                                               ).returncode == 0, 20, d.log)

    live = d.metrics()
    result = promtool_check(live)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b'vswitchd_port_up{port="a"} 1.0' in live

    prom = prometheus(d.metrics_url.removeprefix("http://").removesuffix("/metrics"))

    def received() -> float:
        series = prom.query('vswitchd_port_receive_packets_total{port="a"}')
        return float(series[0]["value"][1]) if series else 0.0

    assert wait_for("Prometheus to see packets received on port a", received, 30,
                    prom.log) >= 3
    drops = prom.query('vswitchd_port_drops_total{port="b"}')
    assert {s["metric"]["reason"] for s in drops} == set(DROP_REASONS)
    assert prom.query("up") and prom.query("up")[0]["value"][1] == "1"
    prom.stop()
    assert d.stop() == 0, d.log()


def test_scrape_time_with_64_ports(daemon, capsys):
    """Prints the median of 20 scrapes of a daemon with 64 TAP ports (run
    with -s); asserts nothing about time."""
    base = f"vsm{secrets.token_hex(4)}"
    d = daemon({f"p{i:02d}": {"type": "tap", "ifname": f"{base}{i:02d}"} for i in range(64)})
    first = d.metrics()
    assert first.count(b"vswitchd_port_receive_packets_total{") == 64
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        body = http_get(d.metrics_url)
        times.append(time.perf_counter() - t0)
    result = promtool_check(body)
    assert result.returncode == 0, result.stdout + result.stderr
    with capsys.disabled():
        print(f"\n/metrics with 64 ports: median {statistics.median(times) * 1e3:.1f} ms "
              f"over 20 scrapes (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}), "
              f"{len(body)} bytes")
    assert d.stop() == 0, d.log()
