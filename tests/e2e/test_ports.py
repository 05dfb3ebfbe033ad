"""End-to-end tests of the port backends with real taps, veths and namespaces."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import socket
import struct
import subprocess
import time
from types import SimpleNamespace

import pytest

from vswitchd.errors import VswitchError
from vswitchd.ports import LinkMonitor, NetdevPort, TapPort, in_netns
from vswitchd.ports.tap import IFF_MULTI_QUEUE, IFF_VNET_HDR, TUNSETIFF

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("require_root")]

TUNGETIFF = 0x800454D2
ETH_P_TEST = 0x88B5  # IEEE "local experimental": nothing else on the link sends it
BROADCAST = b"\xff" * 6


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def link_exists(ifname: str, netns: str | None = None) -> bool:
    where = ["-n", netns] if netns is not None else []
    return sh("ip", *where, "link", "show", "dev", ifname, check=False).returncode == 0


def promiscuity(ifname: str) -> int:
    # PACKET_MR_PROMISC bumps a counter that `ip -d` prints; the PROMISC flag
    # in `ip link` only reflects `ip link set promisc on`.
    words = sh("ip", "-d", "link", "show", "dev", ifname).stdout.split()
    return int(words[words.index("promiscuity") + 1])


def port_cfg(name: str = "vm0", **overrides: object) -> SimpleNamespace:
    """A duck-typed stand-in for vswitchd.config.PortConfig."""
    fields: dict[str, object] = dict(
        name=name,
        type="tap",
        ifname="",
        queues=1,
        netns=None,
        mode="access",
        vlan=1,
        vlans=(),
        native_vlan=None,
        persist=False,
        mtu=None,
        offload=SimpleNamespace(csum=True, tso=True),
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_frame(src_mac: bytes, payload: bytes) -> bytes:
    return BROADCAST + src_mac + struct.pack("!H", ETH_P_TEST) + payload.ljust(46, b"\0")


def ethtool_features(ifname: str, netns: str | None = None) -> dict[str, str]:
    cmd = ["ethtool", "-k", ifname]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    features = {}
    for line in sh(*cmd).stdout.splitlines()[1:]:
        key, _, value = line.partition(":")
        features[key.strip()] = value.split()[0] if value.split() else ""
    return features


def packet_socket(ifname: str, netns: str | None = None) -> socket.socket:
    """A plain AF_PACKET socket for ETH_P_TEST frames, opened inside `netns`."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
    sock.bind((ifname, ETH_P_TEST))
    sock.settimeout(2)
    return sock


def read_test_frame(fd: int, hdr_len: int, timeout_s: float = 2.0) -> bytes:
    """Read from a non-blocking port fd until an ETH_P_TEST frame shows up."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], remaining)[0]:
            break
        data = os.read(fd, 70000)
        if data[hdr_len + 12 : hdr_len + 14] == struct.pack("!H", ETH_P_TEST):
            return data
    raise AssertionError("no test frame received")


# TAP ports.


def test_tap_port_creates_device_with_vnet_hdr_and_offloads(ifname):
    name = ifname()
    port = TapPort(port_cfg(ifname=name, mtu=9000))
    io = port.open()
    try:
        assert port.created
        assert (io.kind, io.vnet_hdr_len, len(io.fds)) == ("fd", 12, 1)
        assert io.offload_csum and io.offload_tso and io.mtu == 9000
        fd = io.fds[0]
        assert os.get_blocking(fd) is False
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        flags = struct.unpack("16sH", fcntl.ioctl(fd, TUNGETIFF, bytes(40))[:18])[1]
        assert flags & IFF_VNET_HDR
        features = ethtool_features(name)
        assert features["tx-checksumming"] == "on"
        assert features["tcp-segmentation-offload"] == "on"
        assert port.read_link_state()  # admin up, and carrier while we hold the fd

        io = port.set_offload(False, False)
        features = ethtool_features(name)
        assert features["tx-checksumming"] == "off"
        assert features["tcp-segmentation-offload"] == "off"
        assert not io.offload_csum and not io.offload_tso
    finally:
        port.close()


def test_tap_port_removes_device_it_created_on_close(ifname):
    name = ifname()
    port = TapPort(port_cfg(ifname=name))
    port.open()
    assert link_exists(name)
    port.close()
    assert not link_exists(name)
    port.close()  # idempotent


def test_persistent_tap_survives_close_and_is_readopted(ifname):
    name = ifname()
    first = TapPort(port_cfg(ifname=name, persist=True))
    first.open()
    first.close()
    assert link_exists(name)

    again = TapPort(port_cfg(ifname=name, persist=True))
    io = again.open()
    try:
        assert not again.created
        assert len(io.fds) == 1 and again.read_link_state()
    finally:
        again.close()
    assert link_exists(name)


def test_persistent_tap_in_netns_is_readopted_inside_it(netns, ifname):
    ns = netns()
    name = ifname(ns)
    first = TapPort(port_cfg(ifname=name, netns=ns, persist=True))
    first.open()
    first.close()
    assert link_exists(name, ns) and not link_exists(name)

    again = TapPort(port_cfg(ifname=name, netns=ns, persist=True))
    again.open()
    try:
        assert not again.created
        assert again.read_link_state()
        assert not link_exists(name)  # attached where it is, not re-created at home
    finally:
        again.close()


def test_multiqueue_tap_opens_one_fd_per_queue(ifname):
    name = ifname()
    port = TapPort(port_cfg(ifname=name, queues=4))
    io = port.open()
    try:
        assert len(set(io.fds)) == 4
        for fd in io.fds:
            flags = struct.unpack("16sH", fcntl.ioctl(fd, TUNGETIFF, bytes(40))[:18])[1]
            assert flags & IFF_MULTI_QUEUE
        queues = os.listdir(f"/sys/class/net/{name}/queues")
        assert sorted(q for q in queues if q.startswith("tx-")) == [f"tx-{i}" for i in range(4)]
    finally:
        port.close()
    assert not link_exists(name)


def test_tap_moved_into_netns_is_up_there(netns, ifname):
    ns = netns()
    name = ifname(ns)
    port = TapPort(port_cfg(ifname=name, netns=ns))
    io = port.open()
    try:
        assert not link_exists(name) and link_exists(name, ns)
        assert "UP" in sh("ip", "-n", ns, "-br", "link", "show", name).stdout
        assert port.read_link_state()
        mac = bytes.fromhex(io.mac.replace(":", ""))

        # Switch -> namespace: a zeroed 12-byte vnet header, then the frame.
        sniffer = packet_socket(name, ns)
        with sniffer:
            sent = make_frame(b"\x02\0\0\0\0\x01", b"to the namespace")
            os.write(io.fds[0], bytes(12) + sent)
            assert sniffer.recv(2048) == sent

        # Namespace -> switch: read with the 12-byte header in front.
        sender = packet_socket(name, ns)
        with sender:
            sent = make_frame(mac, b"from the namespace")
            sender.send(sent)
            data = read_test_frame(io.fds[0], 12)
        assert data[12:] == sent
    finally:
        port.close()
    assert not link_exists(name, ns)


def test_tap_port_on_existing_non_tap_names_port_and_ifname(veth):
    a, _b = veth()
    with pytest.raises(VswitchError, match=rf'^ports\.vm0\.ifname: cannot open tap "{a}"'):
        TapPort(port_cfg(ifname=a)).open()
    assert link_exists(a)


# Netdev ports.


def test_netdev_port_receives_frames_with_vnet_hdr(netns, veth):
    ns = netns()
    a, b = veth(ns)
    port = NetdevPort(port_cfg(type="netdev", ifname=a, queues=2))
    io = port.open()
    try:
        assert (io.kind, io.vnet_hdr_len, len(io.fds)) == ("packet", 10, 2)
        assert io.offload_csum and io.offload_tso
        assert promiscuity(a) == 2  # one reference per socket

        with packet_socket(b, ns) as peer:
            sent = make_frame(b"\x02\0\0\0\0\x02", b"from the namespace")
            peer.send(sent)
            # Fanout hashes the flow onto one of the queues: poll them all.
            ready = select.select(io.fds, [], [], 2)[0]
            assert ready, "no frame on any queue"
            data = read_test_frame(ready[0], 10)
            assert data[:10] == bytes(10) and data[10:] == sent

            sent = make_frame(b"\x02\0\0\0\0\x03", b"to the namespace")
            os.write(io.fds[0], bytes(10) + sent)
            assert peer.recv(2048) == sent
    finally:
        port.close()
    assert promiscuity(a) == 0
    assert link_exists(a)  # never deleted: not ours


def test_netdev_port_describes_partial_checksums_in_vnet_hdr(netns, veth):
    # The partial-checksum trap: a veth peer with checksum offload sends UDP
    # with the checksum unfinished; only the vnet header says so.
    ns = netns()
    a, b = veth(ns)
    port = NetdevPort(port_cfg(type="netdev", ifname=a))
    io = port.open()
    try:
        sh("ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", b)
        sh("ip", "-n", ns, "neigh", "add", "10.99.0.2", "lladdr", io.mac, "dev", b)
        with in_netns(ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x" * 100, ("10.99.0.2", 9999))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            select.select(io.fds, [], [], 2)
            data = os.read(io.fds[0], 70000)
            if data[10 + 12 : 10 + 14] == b"\x08\x00" and data[10 + 23] == 17:
                break
        else:
            raise AssertionError("no UDP frame received")
        flags, _gso_type, _hdr_len, _gso_size, csum_start, csum_offset = struct.unpack_from(
            "<BBHHHH", data
        )
        assert flags & 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
        assert (csum_start, csum_offset) == (14 + 20, 6)  # UDP checksum field
    finally:
        port.close()


def test_netdev_port_set_offload_changes_interface_features(veth):
    a, _b = veth()
    port = NetdevPort(port_cfg(type="netdev", ifname=a))
    port.open()
    try:
        io = port.set_offload(False, False)
        assert not io.offload_csum and not io.offload_tso
        assert ethtool_features(a)["tx-checksumming"] == "off"
        assert port.get_features()["tcp-segmentation-offload"] is False
        port.set_offload(True, True)
        assert ethtool_features(a)["tx-checksumming"] == "on"
    finally:
        port.close()


def test_netdev_port_on_busy_tap_attaches_via_packet_socket(ifname):
    name = ifname()
    # Play QEMU: hold the tap open ourselves.
    held = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(held, TUNSETIFF, struct.pack("16sH22x", name.encode(), 0x0002 | 0x1000))
        with pytest.raises(VswitchError) as err:
            TapPort(port_cfg(ifname=name)).open()
        assert str(err.value).startswith(f'ports.vm0.ifname: tap "{name}" is in use')
        assert 'use type = "netdev"' in str(err.value)
        assert link_exists(name)  # the failed TapPort must not delete QEMU's tap

        port = NetdevPort(port_cfg(type="netdev", ifname=name))
        io = port.open()
        try:
            assert io.kind == "packet" and len(io.fds) == 1
        finally:
            port.close()
        assert link_exists(name)
    finally:
        os.close(held)


def test_missing_namespace_is_a_clear_error():
    with pytest.raises(VswitchError) as err:
        TapPort(port_cfg(ifname="vstnope0", netns="vst-nonexistent")).open()
    assert str(err.value) == 'ports.vm0.netns: namespace "vst-nonexistent" does not exist'
    assert not link_exists("vstnope0")


def test_missing_interface_is_a_clear_error():
    with pytest.raises(VswitchError) as err:
        NetdevPort(port_cfg(name="up0", type="netdev", ifname="vstnope1")).open()
    assert str(err.value) == 'ports.up0.ifname: interface "vstnope1" does not exist'


# Link monitor.


class Events:
    """Collects (key, up) callbacks; lets a test await a specific one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._changed = asyncio.Event()

    def __call__(self, key: str, up: bool) -> None:
        self.seen.append((key, up))
        self._changed.set()

    async def wait_for(self, key: str, up: bool, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.last(key) is not up:
                self._changed.clear()
                await self._changed.wait()

    def last(self, key: str) -> bool | None:
        states = [up for k, up in self.seen if k == key]
        return states[-1] if states else None


@pytest.fixture
async def monitor():
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    mon = LinkMonitor(netns_poll_s=0.1)
    await mon.start()
    yield mon
    await mon.stop()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if t.get_name().startswith("linkmon")]
    assert not errors, errors


async def test_link_monitor_reports_down_and_up(monitor, netns, veth):
    ns = netns()
    a, b = veth(ns)
    events = Events()
    monitor.watch("root", a, None, events)
    monitor.watch("inner", b, ns, events)
    # Reported once, immediately.
    assert events.seen == [("root", True), ("inner", True)]

    sh("ip", "link", "set", a, "down")
    await events.wait_for("root", False)
    await events.wait_for("inner", False)  # the peer lost carrier
    sh("ip", "link", "set", a, "up")
    await events.wait_for("root", True)
    await events.wait_for("inner", True)

    sh("ip", "-n", ns, "link", "set", b, "down")
    await events.wait_for("inner", False)
    sh("ip", "-n", ns, "link", "set", b, "up")
    await events.wait_for("inner", True)

    sh("ip", "-n", ns, "link", "del", b)  # takes its peer with it
    await events.wait_for("inner", False)
    await events.wait_for("root", False)

    monitor.unwatch("root")
    monitor.unwatch("inner")


async def test_link_monitor_reports_interface_that_reappears(monitor, ifname):
    name = ifname()
    events = Events()
    monitor.watch("late", name, None, events)
    assert events.seen == [("late", False)]
    sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    sh("ip", "link", "set", f"{name}p", "up")
    sh("ip", "link", "set", name, "up")
    await events.wait_for("late", True)


async def test_link_monitor_reports_down_when_namespace_is_deleted(monitor, netns, veth):
    ns = netns()
    _a, b = veth(ns)
    events = Events()
    monitor.watch("inner", b, ns, events)
    assert events.seen == [("inner", True)]
    sh("ip", "netns", "del", ns)
    await events.wait_for("inner", False)
