"""`[metrics] listen` changed by a reload of the real daemon.

The new address is bound before the old one is let go; a reload that fails,
on the metrics address or on anything else, leaves the exporter where it
was and the switch as it was.  Both reload paths are driven: `vswitchctl
reload` (its reply carries the error) and SIGHUP (the log does).

Needs root and /dev/net/tun (the daemon creates a TAP): without them the
tests skip, and FAIL when CI=true.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests import listeners
from tests.e2e.daemon_fixture import RunningDaemon
from tests.listeners import free_port, http_get

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("require_root")]


def refused(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    return listeners.refused(host, int(port))


def scrape(listen: str) -> bytes:
    return http_get(f"http://{listen}/metrics")


def link_absent(ifname: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", ifname],
                          capture_output=True).returncode != 0


@pytest.fixture
def busy() -> Iterator[str]:
    """A loopback address something else is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def d(ifname, daemon) -> RunningDaemon:
    """A daemon with one TAP, exporting on a free loopback port."""
    d = daemon({"a": {"type": "tap", "ifname": ifname()}}, metrics=f"127.0.0.1:{free_port()}")
    assert b"vswitchd_info" in d.scrape()
    return d


def test_vswitchctl_reload_moves_the_exporter_and_closes_the_old_port(d):
    old, new = d.metrics, f"127.0.0.1:{free_port()}"
    d.write_config(metrics=new)
    reply = d.ctl("reload")["message"]
    assert reply.endswith(f"; metrics now serving on {new} (was {old})"), reply
    assert b"vswitchd_config_generation 2.0" in scrape(new)
    assert refused(old)
    assert f"metrics: now serving on {new} (was {old})" in d.log()


def test_sighup_reload_disables_the_exporter_and_enables_it_again(d):
    old, new = d.metrics, f"127.0.0.1:{free_port()}"
    d.write_config(metrics="")
    d.reload()
    d.wait_log(f"metrics: disabled (was serving on {old})")
    assert refused(old)

    d.write_config(metrics=new)
    d.reload()
    d.wait_log(f"metrics: now serving on {new} (was disabled)")
    assert b"vswitchd_info" in scrape(new)


def test_a_busy_address_fails_the_reload_and_changes_nothing(d, ifname, busy):
    old, added = d.metrics, ifname()
    d.write_config({**d.ports, "b": {"type": "tap", "ifname": added}}, metrics=busy)
    r = d.ctl_raw("reload")
    error = f"metrics.listen: cannot listen on {busy}: Address already in use"
    assert r.returncode == 1 and r.stderr.strip() == f"vswitchctl: {error}", r.stderr
    assert f"reload refused: {error}" in d.log()
    assert b"vswitchd_config_generation 1.0" in scrape(old)
    assert [p["name"] for p in d.ctl("show")["ports"]] == ["a"]
    assert link_absent(added)                           # refused before any port opened

    d.reload()                                          # SIGHUP: the same, in the log
    d.wait_log(f"reload refused: {error}", count=2)
    assert b"vswitchd_config_generation 1.0" in scrape(old)


def test_a_bad_port_fails_the_reload_and_keeps_the_exporter_on_the_old_port(d, ifname):
    old, new = d.metrics, f"127.0.0.1:{free_port()}"
    missing = ifname()                                  # a netdev that does not exist
    d.write_config({**d.ports, "up": {"type": "netdev", "ifname": missing}}, metrics=new)
    r = d.ctl_raw("reload")
    assert r.returncode == 1 and r.stderr.startswith("vswitchctl: ports.up"), r.stderr
    assert b"vswitchd_config_generation 1.0" in scrape(old)
    assert refused(new)                                 # bound for the reload, then closed
