"""Fixtures for end-to-end tests with real namespaces, veths and taps.

Every name is unique per test and starts with "vst" so a crashed run's
leftovers are easy to spot (`ip -br link | grep vst`, `ip netns | grep vst-`)
and never collide with the host's own interfaces.  Cleanup always deletes by
exact name, never by pattern, and runs whether the test passed or not.

Tests that need root ask for `require_root` (the `netns`, `veth` and
`ifname` factories do): they skip without root, but FAIL when CI=true, so a
CI runner that lost its privileges cannot go green by skipping everything.

Async tests run on both the stock asyncio loop and uvloop (the daemon's), in
debug mode.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest
import uvloop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _debug_loop(factory: LoopFactory) -> LoopFactory:
    def make() -> asyncio.AbstractEventLoop:
        loop = factory()
        loop.set_debug(True)
        return loop

    return make


def pytest_asyncio_loop_factories(config, item):  # noqa: ARG001 - hook signature
    return {
        "asyncio": _debug_loop(asyncio.new_event_loop),
        "uvloop": _debug_loop(uvloop.new_event_loop),
    }


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), capturing text output."""
    return subprocess.run(args, check=check, capture_output=True, text=True)


def unique_name(prefix: str = "vst") -> str:
    # "vst" + 8 hex digits + a 2-char suffix stays within IFNAMSIZ-1 (15).
    return f"{prefix}{secrets.token_hex(4)}"


def link_exists(ifname: str, netns: str | None = None) -> bool:
    cmd = ["ip", "link", "show", "dev", ifname]
    if netns is not None:
        cmd = ["ip", "-n", netns, *cmd[1:]]
    return sh(*cmd, check=False).returncode == 0


@pytest.fixture
def require_root() -> None:
    """Skip unless root with /dev/net/tun; fail instead of skipping when CI=true."""
    missing = None
    if os.geteuid() != 0:
        missing = "needs root"
    elif not os.path.exists("/dev/net/tun"):
        missing = "needs /dev/net/tun"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (CI=true: refusing to skip)")
    pytest.skip(missing)


@pytest.fixture
def netns(require_root: None) -> Iterator[Callable[[], str]]:
    """Factory: `netns()` creates a namespace "vst-XXXXXXXX" and returns its name."""
    created: list[str] = []

    def make() -> str:
        name = unique_name("vst-")
        sh("ip", "netns", "add", name)
        created.append(name)
        return name

    yield make
    for name in created:
        # A test may have deleted it already; that is fine.
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def ifname(require_root: None) -> Iterator[Callable[..., str]]:
    """Factory: `ifname(netns=None)` returns a fresh interface name to use.

    Whatever ends up with that name (in the root namespace, or in `netns`
    when given) is deleted after the test.
    """
    names: list[tuple[str, str | None]] = []

    def make(netns: str | None = None) -> str:
        name = unique_name()
        names.append((name, netns))
        return name

    yield make
    for name, ns in names:
        for where in (None, ns) if ns is not None else (None,):
            if link_exists(name, where):
                cmd = ["ip", "link", "del", "dev", name]
                if where is not None:
                    cmd = ["ip", "-n", where, *cmd[1:]]
                sh(*cmd, check=False)


@pytest.fixture
def veth(require_root: None) -> Iterator[Callable[..., tuple[str, str]]]:
    """Factory: `veth(peer_netns=None)` creates an up veth pair, returns (a, b).

    `a` stays in the root namespace; `b` goes into `peer_netns` if given.
    Deleting `a` removes both ends.
    """
    pairs: list[tuple[str, str, str | None]] = []

    def make(peer_netns: str | None = None) -> tuple[str, str]:
        base = unique_name()
        a, b = f"{base}a", f"{base}b"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        pairs.append((a, b, peer_netns))
        if peer_netns is not None:
            sh("ip", "link", "set", b, "netns", peer_netns)
            sh("ip", "-n", peer_netns, "link", "set", b, "up")
        else:
            sh("ip", "link", "set", b, "up")
        sh("ip", "link", "set", a, "up")
        return a, b

    yield make
    for a, b, ns in pairs:
        sh("ip", "link", "del", "dev", a, check=False)
        if ns is not None:
            sh("ip", "-n", ns, "link", "del", "dev", b, check=False)


@pytest.fixture
def daemon(tmp_path, require_root: None):
    """Factory: `daemon(ports, **kw)` starts the real vswitchd on its own
    config and socket; every daemon started is stopped after the test and
    must exit 0."""
    from tests.e2e.daemon_fixture import RunningDaemon

    started: list[RunningDaemon] = []

    def make(ports: dict, **kw) -> RunningDaemon:
        d = RunningDaemon(tmp_path, ports, **kw)
        d.start()
        started.append(d)
        return d

    yield make
    for d in started:
        rc = d.stop()
        assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"
