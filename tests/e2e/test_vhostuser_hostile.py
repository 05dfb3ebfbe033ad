"""vswitchd against a hostile guest on a vhost-user port (issue 12, "the guest is untrusted").

Three `type = "vhostuser"` ports on one VLAN: `hostile`, driven by the
hostile front end (tests/vhostuser/hostile.py), and `good_a` / `good_b`,
driven by the well-behaved one.  For each attack a fresh hostile guest
connects (a queue whose rings are broken is stopped, so every attack gets
new rings), writes its lie and kicks; the test then asserts that

  - the daemon counts it: one of the attack's expected drop reasons
    (`vswitchctl stats`, on any port) grows,
  - the daemon lives and still answers its management socket,
  - good_a -> good_b keeps forwarding every frame,
  - after a frame-content attack (bad virtio-net header) the hostile queue
    itself still forwards a good frame: bad frames are dropped, not the queue.

A last test reconnects a well-behaved guest on the hostile port's socket
and expects it to forward: the port recovers once the bad guest is gone.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.daemon_fixture import RunningDaemon
from tests.vhostuser.frontend import PLAIN_HDR, Options, VirtioNetFrontend
from tests.vhostuser.hostile import ATTACKS, Attack

pytestmark = pytest.mark.root

MAC_A = bytes.fromhex("02000000a001")
MAC_B = bytes.fromhex("02000000b001")
MAC_H = bytes.fromhex("02000000fe01")
PROBE_TYPE = b"\x88\xb5"            # IEEE local experimental: nothing else sends it
BROADCAST = b"\xff" * 6


def probe(dst: bytes, src: bytes, tag: int, seq: int) -> bytes:
    return dst + src + PROBE_TYPE + tag.to_bytes(4, "big") + seq.to_bytes(4, "big") + bytes(42)


def probes_with_tag(frames: list[bytes], tag: int) -> set[int]:
    return {int.from_bytes(f[18:22], "big") for f in frames
            if f[12:14] == PROBE_TYPE and int.from_bytes(f[14:18], "big") == tag}


@dataclass
class Rig:
    daemon: RunningDaemon
    socks: dict[str, str]
    good_a: VirtioNetFrontend
    good_b: VirtioNetFrontend

    def drops(self) -> dict[str, int]:
        """Drop counters by "port/reason", every port."""
        out = {}
        for p in self.daemon.ctl("stats")["ports"]:
            for reason, n in (p.get("drops") or {}).items():
                out[f"{p['name']}/{reason}"] = int(n)
        return out

    def alive(self) -> bool:
        return self.daemon.proc is not None and self.daemon.proc.poll() is None

    def a_to_b(self, tag: int, n: int = 32, timeout_s: float = 5.0) -> int:
        """Send `n` probes good_a -> good_b; how many good_b received."""
        assert self.good_a.send_all([probe(MAC_B, MAC_A, tag, i) for i in range(n)]) == n
        return len(self.collect(self.good_b, tag, n, timeout_s))

    @staticmethod
    def collect(fe: VirtioNetFrontend, tag: int, n: int, timeout_s: float) -> set[int]:
        seen: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(seen) < n and time.monotonic() < deadline:
            seen |= probes_with_tag(fe.recv(timeout_s=0.2), tag)
        return seen


def _root_or_fail() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("needs root (CI=true: refusing to skip)")
    pytest.skip("needs root")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    _root_or_fail()
    tmp = tmp_path_factory.mktemp("vhost-hostile")
    uid = uuid.uuid4().hex[:6]
    # AF_UNIX paths are limited to 108 bytes: short names under /tmp.
    socks = {name: f"/tmp/vfh-{uid}-{name}.sock" for name in ("hostile", "good_a", "good_b")}
    ports = {name: {"type": "vhostuser", "socket": path, "socket_mode": "server",
                    "queues": 1, "mode": "access", "vlan": 10}
             for name, path in socks.items()}
    d = RunningDaemon(tmp, ports, switch={"workers": 1})
    d.start()
    good: list[VirtioNetFrontend] = []
    try:
        for name in ("good_a", "good_b"):
            fe = VirtioNetFrontend(socks[name], Options())
            fe.start(timeout_s=15)
            good.append(fe)
        d.wait_ports_up("good_a", "good_b", timeout_s=15)
        r = Rig(d, socks, good[0], good[1])
        # Let the switch learn both good MACs, so a -> b is known unicast.
        r.good_b.send_all([probe(MAC_A, MAC_B, 0, 0)])
        r.good_a.send_all([probe(MAC_B, MAC_A, 0, 0)])
        r.collect(r.good_a, 0, 1, 3.0)
        yield r
    finally:
        for fe in good:
            fe.close()
        rc = d.stop()
        for path in socks.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        assert rc == 0, f"vswitchd exited {rc} at the end:\n{d.log()[-3000:]}"


def wait_for(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def reasons(counts: dict[str, int]) -> set[str]:
    """The drop reasons in "port/reason" keys."""
    return {k.split("/", 1)[1] for k in counts}


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_hostile_guest_is_counted_and_other_ports_keep_forwarding(rig: Rig,
                                                                 attack: Attack) -> None:
    tag = 1000 + ATTACKS.index(attack)
    with VirtioNetFrontend(rig.socks["hostile"], Options(indirect=True)) as fe:
        fe.start(timeout_s=15)
        # The port's counters start again from zero when a guest connects:
        # the baseline is taken once this guest's device runs.
        rig.daemon.wait_ports_up("hostile", timeout_s=10)
        before = rig.drops()
        attack.run(fe)
        if attack.needs_rx_traffic:
            # Something for the switch to write into the bad rx buffers.
            rig.good_a.send_all([probe(BROADCAST, MAC_A, tag, i) for i in range(8)])
        counted = wait_for(lambda: bool(reasons(grown(before, rig.drops())) & attack.expect),
                           5.0)
        assert rig.alive(), f"vswitchd died on {attack.name}:\n{rig.daemon.log()[-3000:]}"
        assert counted, (f"{attack.name}: none of {sorted(attack.expect)} counted; grown: "
                         f"{grown(before, rig.drops())}; port: {rig.daemon.port('hostile')}")
        if attack.rings_intact:
            # Bad frames are dropped, the queue is not: a good one still gets through.
            assert fe.send([probe(MAC_B, MAC_H, tag, 99)], hdr=PLAIN_HDR) == 1
            assert rig.collect(rig.good_b, tag, 1, 5.0) == {99}
    assert rig.a_to_b(tag) == 32, f"good_a -> good_b stopped after {attack.name}"
    print(f"{attack.name}: counted as {grown(before, rig.drops())}")


def test_hostile_port_forwards_again_for_a_well_behaved_guest(rig: Rig) -> None:
    with VirtioNetFrontend(rig.socks["hostile"], Options()) as fe:
        fe.start(timeout_s=15)
        rig.daemon.wait_ports_up("hostile", timeout_s=10)
        assert fe.send_all([probe(MAC_B, MAC_H, 7, i) for i in range(16)]) == 16
        assert len(rig.collect(rig.good_b, 7, 16, 5.0)) == 16
        assert rig.good_b.send_all([probe(MAC_H, MAC_B, 8, i) for i in range(16)]) == 16
        assert len(rig.collect(fe, 8, 16, 5.0)) == 16

