"""The exporter end to end: the real daemon, real TAPs, a real Prometheus.

The daemon runs as a subprocess on its own config, management socket and
metrics port (the shared `daemon` fixture, `daemon_fixture.RunningDaemon`);
its TAPs live in namespaces from the shared `netns` fixture or are named by
the `ifname` fixture, and are deleted by exact name.  A real Prometheus
server (Debian package `prometheus`) scrapes it every second; the test reads
the result back from Prometheus's query API, so names, types and the text
format are checked by the consumer that matters.

Needs root, /dev/net/tun, `ip`, `ping`, `/usr/bin/prometheus` and `promtool`:
without them the tests skip, and FAIL when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.listeners import free_port, http_get
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
    d = daemon({"a": tap_in(a), "b": tap_in(b)}, metrics=f"127.0.0.1:{free_port()}")
    for ns, ip in ((a, "10.78.0.1/24"), (b, "10.78.0.2/24")):
        in_ns(ns, "ip", "addr", "add", ip, "dev", f"vm{ns[-8:]}")
        in_ns(ns, "ip", "link", "set", f"vm{ns[-8:]}", "up")
    # The first pings may go while the daemon still sees the link down.
    wait_for("ping from a to b", lambda: in_ns(a, "ping", "-n", "-q", "-c", "3", "-i", "0.2",
                                               "-W", "1", "10.78.0.2", check=False
                                               ).returncode == 0, 20, d.log)

    live = d.scrape()
    result = promtool_check(live)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b'vswitchd_port_up{port="a"} 1.0' in live

    prom = prometheus(d.metrics)

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


def test_scrape_time_with_64_ports(ifname, daemon, capsys):
    """Prints the median of 20 scrapes of a daemon with 64 TAP ports (run
    with -s); asserts nothing about time."""
    # `ifname` is set up before `daemon`, so torn down after it: a TAP left
    # behind is deleted once the daemon has stopped, not under it.
    d = daemon({f"p{i:02d}": {"type": "tap", "ifname": ifname()} for i in range(64)},
               metrics=f"127.0.0.1:{free_port()}")
    first = d.scrape()
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
