"""Vhost-user ports with dpdk-testpmd's virtio_user as the guest (issue 12).

Topology: one testpmd with two virtio_user ports, each on its own
vhost-user port of VLAN 10 of one vswitchd (one worker, interrupt mode:
busy_poll_us = 0, as for real VMs).  testpmd's io forwarding with
`start tx_first` keeps a burst circulating: port 0 -> switch -> port 1 ->
testpmd -> port 1 -> switch -> port 0 ... so frames flow both ways.

Counters: every frame testpmd sent reached the switch (its rx_packets),
and every frame the switch received from one port was delivered to the
other or counted as a drop there; testpmd received what the switch sent,
but for what sat in its receive rings when forwarding stopped (at most
the rings' size).

Socket paths live in a short directory of their own: sun_path holds 107
bytes and pytest's tmp_path can be longer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.testpmd import PortStats, Testpmd, vdev

Factory = Callable[..., RunningDaemon]
RING_SLACK = 1024       # frames a stopped testpmd may leave unread in its rx rings
SWITCH = {"workers": 1, "busy_poll_us": 0}

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/dpdk-testpmd")
                                and os.environ.get("CI") != "true",
                                reason="needs dpdk-testpmd (Debian dpdk-dev)")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vhu-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def testpmd(sockdir: Path) -> Iterator[Callable[..., Testpmd]]:
    started: list[Testpmd] = []

    def make(vdevs: list[str], extra: tuple[str, ...] = ()) -> Testpmd:
        tp = Testpmd(f"vhu{os.getpid()}{len(started)}{sockdir.name[-6:]}", vdevs,
                     extra=extra, log_path=str(sockdir / "testpmd.log"))
        started.append(tp)
        return tp

    yield make
    for tp in started:
        tp.close()


def vhost_ports(sockdir: Path, mode: str = "server", queues: int = 1) -> dict[str, dict]:
    return {name: {"type": "vhostuser", "socket": str(sockdir / f"{name}.sock"),
                   "socket_mode": mode, "queues": queues, "vlan": 10}
            for name in ("vm1", "vm2")}


def wait_running(d: RunningDaemon, *names: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ports = {p["name"]: p for p in d.ctl("show")["ports"]}
        if all(ports[n]["link"] == "up" for n in names):
            return
        time.sleep(0.1)
    raise AssertionError(f"vhost ports {names} not running: {d.ctl('show')}\n{d.log()}")


def circulate(tp: Testpmd, seconds: float) -> dict[int, PortStats]:
    """io forwarding with bursts in flight for `seconds`; testpmd's stats."""
    tp.cmd("start tx_first")
    time.sleep(seconds)
    mark = len(tp.output())
    tp.cmd("stop")
    tp.wait_for("Done.", after=mark)
    return tp.stats(2)


def settled_ports(d: RunningDaemon) -> dict[str, dict]:
    """The switch's port rows once its counters stop moving."""
    last: dict[str, dict] = {}
    for _ in range(50):
        ports = {p["name"]: p for p in d.ctl("show")["ports"]}
        key = {n: (p["rx_packets"], p["tx_packets"], p["drops"]) for n, p in ports.items()}
        if key == {n: (p["rx_packets"], p["tx_packets"], p["drops"]) for n, p in last.items()}:
            return ports
        last = ports
        time.sleep(0.2)
    return last


def check_counters(d: RunningDaemon, st: dict[int, PortStats]) -> None:
    ports = settled_ports(d)
    vm1, vm2 = ports["vm1"], ports["vm2"]
    assert st[0].tx_packets > 1000 and st[1].tx_packets > 1000, st
    assert vm1["rx_packets"] == st[0].tx_packets, (vm1, st)
    assert vm2["rx_packets"] == st[1].tx_packets, (vm2, st)
    for src, dst, tp_rx in ((vm1, vm2, st[1].rx_packets), (vm2, vm1, st[0].rx_packets)):
        assert src["rx_packets"] == dst["tx_packets"] + dst["drops"] + src["drops"], (src, dst)
        assert tp_rx <= dst["tx_packets"] <= tp_rx + RING_SLACK, (dst, st)


@pytest.mark.parametrize("args", [
    {"mrg_rxbuf": 1},
    {"mrg_rxbuf": 0},
    {"in_order": 1},
    {"in_order": 0, "mrg_rxbuf": 0},
], ids=["mrg_rxbuf1", "mrg_rxbuf0", "in_order1", "in_order0_mrg0"])
def test_testpmd_frames_flow_both_ways_and_counters_agree(daemon: Factory, testpmd,
                                                           sockdir: Path, args: dict) -> None:
    d = daemon(vhost_ports(sockdir), switch=SWITCH)
    tp = testpmd([vdev(0, str(sockdir / "vm1.sock"), **args),
                  vdev(1, str(sockdir / "vm2.sock"), **args)])
    tp.ready()
    wait_running(d, "vm1", "vm2")
    check_counters(d, circulate(tp, 2.0))


def test_testpmd_two_queue_pairs_forward(daemon: Factory, testpmd, sockdir: Path) -> None:
    d = daemon(vhost_ports(sockdir, queues=2), switch=SWITCH)
    tp = testpmd([vdev(0, str(sockdir / "vm1.sock"), queues=2),
                  vdev(1, str(sockdir / "vm2.sock"), queues=2)],
                 extra=("--rxq=2", "--txq=2"))
    tp.ready()
    wait_running(d, "vm1", "vm2")
    deadline = time.monotonic() + 10
    while d.port("vm1")["queues"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert d.port("vm1")["queues"] == 2 and d.port("vm2")["queues"] == 2
    v = d.port("vm1")["vhost"]
    assert v["state"] == "running" and v["queues"] == 2 and v["max_queues"] == 2
    assert {"version_1", "mq", "mrg_rxbuf"} <= set(v["features"])
    assert {"mq", "reply_ack"} <= set(v["protocol_features"])
    text = d.ctl_raw("show").stdout
    assert f"vhost-user vm1: {sockdir}/vm1.sock (server), running, queues 2/2" in text
    check_counters(d, circulate(tp, 2.0))


def test_client_mode_connects_to_a_listening_front_end(daemon: Factory, testpmd,
                                                       sockdir: Path) -> None:
    d = daemon(vhost_ports(sockdir, mode="client"), switch=SWITCH)
    tp = testpmd([vdev(0, str(sockdir / "vm1.sock"), server=1),
                  vdev(1, str(sockdir / "vm2.sock"), server=1)])
    tp.ready()
    wait_running(d, "vm1", "vm2")
    check_counters(d, circulate(tp, 2.0))


@pytest.mark.parametrize("mode", ["server", "client"])
def test_front_end_killed_mid_traffic_and_restarted_forwards_again(
        daemon: Factory, testpmd, sockdir: Path, mode: str) -> None:
    d = daemon(vhost_ports(sockdir, mode=mode), switch=SWITCH)
    extra = {"server": 1} if mode == "client" else {}
    vdevs = [vdev(0, str(sockdir / "vm1.sock"), **extra),
             vdev(1, str(sockdir / "vm2.sock"), **extra)]
    tp = testpmd(vdevs)
    tp.ready()
    wait_running(d, "vm1", "vm2")
    tp.cmd("start tx_first")
    time.sleep(1.0)
    before = d.port("vm2")["rx_packets"]
    tp.kill()                   # mid-traffic, no goodbye
    assert before > 1000
    deadline = time.monotonic() + 10
    while d.port("vm1")["link"] == "up" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert d.port("vm1")["link"] == "down"
    if mode == "server":
        for s in ("vm1.sock", "vm2.sock"):
            assert (sockdir / s).exists()
    else:
        for s in ("vm1.sock", "vm2.sock"):      # testpmd's stale sockets
            (sockdir / s).unlink(missing_ok=True)

    tp2 = testpmd(vdevs)
    tp2.ready()
    wait_running(d, "vm1", "vm2")
    r1 = {p["name"]: p["rx_packets"] for p in d.ctl("show")["ports"]}
    # A reconnect is not a new port: its counters carry on, as Prometheus
    # counters must while the port exists.
    assert r1["vm2"] >= before, (r1, before)
    st = circulate(tp2, 1.5)
    ports = settled_ports(d)
    assert ports["vm1"]["rx_packets"] - r1["vm1"] == st[0].tx_packets
    assert ports["vm2"]["rx_packets"] - r1["vm2"] == st[1].tx_packets
    assert st[0].rx_packets > 1000 and st[1].rx_packets > 1000, st


def test_restart_in_client_mode_resumes_forwarding(daemon: Factory, testpmd,
                                                    sockdir: Path) -> None:
    """socket_mode = "client": the VMs (testpmd, server=1) keep running while
    vswitchd stops and starts; forwarding resumes on its own.  testpmd
    sends without pause (txonly, so it never refills its receive rings:
    the frames the new daemon takes from both VMs are the signal); the gap
    is from the stop to the first frame the new daemon takes from each,
    sampled with `vswitchctl show`.

    DPDK's virtio_user resets its rings when the backend comes back
    (SET_VRING_BASE 0), so frames in flight are lost there; QEMU keeps
    them (docs/vhost-user.md)."""
    d = daemon(vhost_ports(sockdir, mode="client"), switch=SWITCH)
    tp = testpmd([vdev(0, str(sockdir / "vm1.sock"), server=1),
                  vdev(1, str(sockdir / "vm2.sock"), server=1)])
    tp.ready()
    wait_running(d, "vm1", "vm2")
    tp.cmd("set fwd txonly")
    tp.cmd("start")
    time.sleep(1.0)
    assert d.port("vm2")["rx_packets"] > 100
    t_stop = time.monotonic()
    assert d.stop() == 0
    (d.tmp / "notify.sock").unlink(missing_ok=True)
    d.start()
    t_started = time.monotonic()
    resumed = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ports = {p["name"]: p for p in d.ctl("show")["ports"]}
        if ports["vm1"]["rx_packets"] > 0 and ports["vm2"]["rx_packets"] > 0:
            resumed = time.monotonic()
            break
        time.sleep(0.05)
    assert resumed is not None, f"forwarding did not resume: {d.ctl('show')}"
    gap = resumed - t_stop
    print(f"vhost client-mode restart: gap {gap:.2f} s (stop + start took "
          f"{t_started - t_stop:.2f} s)")
    assert gap < 10


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_guest_costs_the_switch_no_cpu_and_a_busy_one_is_polled(
        daemon: Factory, testpmd, sockdir: Path) -> None:
    """Interrupt mode: with both front ends connected and silent, the
    worker sleeps on the kick eventfds (notifications on); once frames
    flow it polls the rings and every frame still gets through."""
    d = daemon(vhost_ports(sockdir), switch=SWITCH)
    tp = testpmd([vdev(0, str(sockdir / "vm1.sock")), vdev(1, str(sockdir / "vm2.sock"))])
    tp.ready()
    wait_running(d, "vm1", "vm2")
    assert d.proc is not None
    time.sleep(0.5)
    c0 = cpu_s(d.proc.pid)
    time.sleep(3.0)
    idle = cpu_s(d.proc.pid) - c0
    print(f"idle vswitchd with two connected vhost-user front ends: {idle:.2f} s CPU in 3 s")
    assert idle < 0.3, f"idle vswitchd used {idle:.2f} s of CPU in 3 s"
    check_counters(d, circulate(tp, 1.5))
