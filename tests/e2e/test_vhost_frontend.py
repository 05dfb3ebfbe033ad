"""The test front end (tests/vhostuser) against a real vhost-user back end: dpdk-testpmd.

These pin down that the Python virtio-net driver the vhost-user port tests
rely on speaks the protocol the way real back ends expect: if testpmd
counts our frames and returns them, a failure against vswitchd is
vswitchd's.  testpmd busy-polls one core, so every run is a few seconds.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vhostuser import testpmd as tpmd
from tests.vhostuser.frontend import Options, VirtioNetFrontend
from tests.vhostuser.hostile import ATTACKS, hostile_frame
from tests.vhostuser.protocol import Feature, ProtocolFeature

pytestmark = pytest.mark.root

DST = bytes.fromhex("020000000002")
SRC = bytes.fromhex("020000000001")


PROBE_SEQ = 0xFFFFFFFF      # warm-up frames, never counted


def frame(seq: int, size: int = 64) -> bytes:
    """An IPv4-typed frame of `size` bytes carrying `seq` so each can be told apart."""
    body = seq.to_bytes(4, "big") + bytes(size - 18)
    return DST + SRC + b"\x08\x00" + body


@pytest.fixture
def need_testpmd(require_root: None) -> None:
    if tpmd.available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("dpdk-testpmd missing (apt-get install dpdk-dev; CI=true: refusing to skip)")
    pytest.skip("dpdk-testpmd missing (apt-get install dpdk-dev)")


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    path = f"/tmp/vfr-{uuid.uuid4().hex[:8]}.sock"
    yield path
    if os.path.exists(path):
        os.unlink(path)


def start_pair(sock: str, fwd: str, opts: Options, tmp_path: Path,
               client: bool = False) -> tuple[tpmd.Testpmd, VirtioNetFrontend]:
    """testpmd (net_vhost on `sock`) and a front end on it, device ready, forwarding."""
    tp = tpmd.Testpmd(sock, f"vfr-{uuid.uuid4().hex[:8]}", fwd=fwd, client=client,
                      log=tmp_path / "testpmd.log")
    fe = VirtioNetFrontend(sock, opts, listen=client)
    try:
        if client:
            # testpmd connects to us: listen first, then start it.
            errors: list[BaseException] = []

            def accept() -> None:
                try:
                    fe.start(timeout_s=20)
                except BaseException as e:  # surfaced below
                    errors.append(e)

            th = threading.Thread(target=accept, name="frontend-accept")
            th.start()
            tp.start()
            th.join(30)
            if errors:
                raise errors[0]
        else:
            tp.start()
            fe.start()
        tp.wait_ready()
        tp.start_forwarding()
        if fwd == "macswap":
            wait_forwarding(fe)
    except BaseException:
        fe.close()
        tp.stop()
        raise
    return tp, fe


def wait_forwarding(fe: VirtioNetFrontend, timeout_s: float = 10.0) -> None:
    """Probes until one comes back, so counted frames never race testpmd's
    start: its "start" command returns before its forwarding core runs, and
    a CI run lost exactly one batch of 100 in a macswap test (cause not
    proven; this removes the likeliest one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fe.send_all([frame(PROBE_SEQ)])
        if fe.recv(timeout_s=0.5, want=1):
            fe.recv(timeout_s=0.2)          # drain late copies of earlier probes
            return
    raise AssertionError("testpmd forwarded no probe frame back")


@pytest.mark.parametrize("event_idx", [False, True], ids=["notify", "event_idx"])
def test_testpmd_counts_every_frame_sent_on_tx(need_testpmd: None, sock_path: str,
                                               tmp_path: Path, event_idx: bool) -> None:
    tp, fe = start_pair(sock_path, "rxonly", Options(event_idx=event_idx), tmp_path)
    try:
        assert fe.send_all([frame(i) for i in range(1000)]) == 1000
        assert tp.wait_rx(1000) == 1000
        stats = tp.stats()
        assert stats["rx_bytes"] == 1000 * 64      # the 12-byte header is not frame data
        assert fe.tx_completed()
        assert fe.stop()[1] == 1000                 # GET_VRING_BASE: tx consumed up to 1000
    finally:
        fe.close()
        tp.stop()


def test_negotiates_version_1_and_reply_ack_with_testpmd(need_testpmd: None, sock_path: str,
                                                         tmp_path: Path) -> None:
    tp, fe = start_pair(sock_path, "rxonly", Options(), tmp_path)
    try:
        neg = fe.neg
        assert neg is not None
        assert neg.has(Feature.VERSION_1) and neg.has(Feature.NET_MRG_RXBUF)
        assert neg.has_protocol(ProtocolFeature.REPLY_ACK)
        assert neg.has_protocol(ProtocolFeature.STATUS)
        assert neg.queue_num is not None and neg.queue_num >= 1
    finally:
        fe.close()
        tp.stop()


@pytest.mark.parametrize("mrg_rxbuf", [True, False], ids=["mrg_rxbuf", "no_mrg_rxbuf"])
def test_frames_from_testpmd_txonly_arrive_on_rx(need_testpmd: None, sock_path: str,
                                                 tmp_path: Path, mrg_rxbuf: bool) -> None:
    tp, fe = start_pair(sock_path, "txonly", Options(mrg_rxbuf=mrg_rxbuf), tmp_path)
    try:
        got = fe.recv(timeout_s=10, want=2000)
        assert len(got) >= 2000
        # testpmd's txonly default: 64-byte IPv4/UDP frames.
        assert {len(f) for f in got} == {64}
        assert all(f[12:14] == b"\x08\x00" and f[23] == 17 for f in got[:50])
    finally:
        fe.close()
        tp.stop()


@pytest.mark.parametrize("event_idx", [False, True], ids=["notify", "event_idx"])
def test_macswap_returns_every_frame_with_macs_swapped(need_testpmd: None, sock_path: str,
                                                       tmp_path: Path, event_idx: bool) -> None:
    tp, fe = start_pair(sock_path, "macswap", Options(event_idx=event_idx), tmp_path)
    try:
        back: list[bytes] = []
        # Batches smaller than the rx ring: testpmd drops what the ring can't take.
        for batch in range(10):
            frames = [frame(batch * 100 + i, 60 + i) for i in range(100)]
            assert fe.send_all(frames) == 100
            back += fe.recv(timeout_s=5, want=100)
        assert len(back) == 1000
        assert all(f[:6] == SRC and f[6:12] == DST for f in back)
        assert sorted(int.from_bytes(f[14:18], "big") for f in back) == list(range(1000))
        assert sorted({len(f) for f in back}) == list(range(60, 160))
    finally:
        fe.close()
        tp.stop()


def test_front_end_listens_for_testpmd_in_client_mode(need_testpmd: None, sock_path: str,
                                                      tmp_path: Path) -> None:
    tp, fe = start_pair(sock_path, "macswap", Options(), tmp_path, client=True)
    try:
        assert fe.send_all([frame(i) for i in range(50)]) == 50
        assert len(fe.recv(timeout_s=5, want=50)) == 50
    finally:
        fe.close()
        tp.stop()


def test_jumbo_frame_spans_merged_rx_buffers(need_testpmd: None, sock_path: str,
                                             tmp_path: Path) -> None:
    """With 512-byte rx buffers testpmd returns a 1500-byte frame in 3 (num_buffers = 3)."""
    opts = Options(mrg_rxbuf=True, rx_buf_len=512)
    tp, fe = start_pair(sock_path, "macswap", opts, tmp_path)
    try:
        big = frame(7, 1500)
        assert fe.send_all([big]) == 1
        got = fe.recv(timeout_s=5, want=1)
        assert got == [SRC + DST + big[12:]]
    finally:
        fe.close()
        tp.stop()


def test_testpmd_survives_every_hostile_attack_and_serves_the_next_guest(
        need_testpmd: None, sock_path: str, tmp_path: Path) -> None:
    """The hostile driver (tests/vhostuser/hostile.py) against DPDK's hardened back end.

    DPDK drops most of these silently and lets a few through (it accepts a
    writable tx descriptor, and does not look at virtio-net headers in
    rxonly/macswap); what this pins down is that every attack runs to the
    end, the back end lives, and a well-behaved guest reconnecting after
    them gets its frames back -- the same shape the vswitchd test asserts."""
    tp = tpmd.Testpmd(sock_path, f"vfr-{uuid.uuid4().hex[:8]}", fwd="macswap",
                      log=tmp_path / "testpmd.log")
    tp.start()
    try:
        tp.start_forwarding()
        for attack in ATTACKS:
            with VirtioNetFrontend(sock_path, Options(indirect=True)) as fe:
                fe.start()
                attack.run(fe)
                tp.stats()                      # answers: the process is alive
            assert tp.proc is not None and tp.proc.poll() is None, attack.name
        with VirtioNetFrontend(sock_path, Options()) as fe:
            fe.start()
            assert fe.send_all([hostile_frame()] * 20) == 20
            assert len(fe.recv(timeout_s=5, want=20)) == 20
    finally:
        tp.stop()


def test_reconnect_resumes_the_rings_where_they_were(need_testpmd: None, sock_path: str,
                                                     tmp_path: Path) -> None:
    """Same memory, same rings, SET_VRING_BASE = used idx: testpmd carries on counting."""
    tp, fe = start_pair(sock_path, "rxonly", Options(), tmp_path)
    try:
        assert fe.send_all([frame(i) for i in range(300)]) == 300
        assert tp.wait_rx(300) == 300
        assert fe.tx_completed()
        fe.reconnect()
        assert fe.send_all([frame(i) for i in range(300, 600)]) == 300
        assert tp.wait_rx(600) == 600
        assert fe.queues[1].avail_idx == 600       # the ring was not reset
    finally:
        fe.close()
        tp.stop()
