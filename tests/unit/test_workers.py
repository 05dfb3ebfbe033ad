"""The real worker threads: frames flow while configs are swapped and rx
queues move between workers, and none is lost or left behind."""

from __future__ import annotations

import socket
import threading
import time

from tests.frames import BROADCAST, eth, mac
from vswitchd.fastpath import PortParams, Switch


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    a.setblocking(False)
    return a, b


def wait_for(pred, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.001)
    return pred()


def test_no_frame_is_lost_while_rx_queues_move_between_workers() -> None:
    sw = Switch(2, None, 1024)
    (a_sw, a_vm), (b_sw, b_vm) = pair(), pair()
    ports = [PortParams(id=0, fds=(a_sw.fileno(),)), PortParams(id=1, fds=(b_sw.fileno(),))]
    received = 0
    stop = threading.Event()

    def receiver() -> None:
        nonlocal received
        b_vm.settimeout(0.05)
        while not stop.is_set():
            try:
                b_vm.recv(2048)
                received += 1
            except TimeoutError:
                pass

    def mover() -> None:
        flip = 0
        while not stop.is_set():
            sw.publish(ports, {flip: [(0, 0)], 1 - flip: [(1, 0)]})
            flip = 1 - flip
            time.sleep(0.0005)

    sw.start()
    threads = [threading.Thread(target=receiver), threading.Thread(target=mover)]
    try:
        sw.publish(ports, {0: [(0, 0)], 1: [(1, 0)]})
        for t in threads:
            t.start()
        sent = 0
        for chunk in range(100):
            for i in range(100):
                a_vm.send(eth(BROADCAST, mac(1), payload=bytes([chunk % 256, i]) * 23))
                sent += 1
            assert wait_for(lambda n=sent: received == n), f"{received} of {sent} arrived"
        generations = sw.generation
    finally:
        stop.set()
        for t in threads:
            t.join()
        sw.stop()
    counters = sw.port_counters(1)
    sw.close()
    assert generations > 20                   # the queue really moved, many times
    assert received == sent == 10_000
    assert counters["tx_packets"] == sent and counters["tx_error"] == 0
    for s in (a_sw, a_vm, b_sw, b_vm):
        s.close()


def test_two_workers_transmit_to_one_port_concurrently() -> None:
    sw = Switch(2, None, 1024)
    socks = [pair() for _ in range(3)]
    ports = [PortParams(id=i, fds=(s.fileno(),)) for i, (s, _) in enumerate(socks)]
    sw.start()
    try:
        sw.publish(ports, {0: [(0, 0)], 1: [(1, 0), (2, 0)]})
        out = socks[2][1]
        out.settimeout(2)
        got = 0
        for _ in range(50):
            for src in (0, 1):
                for _ in range(20):
                    socks[src][1].send(eth(b"\x02\x00\x00\x00\x77\x77", mac(src + 1)))
            for _ in range(40):
                out.recv(2048)
                got += 1
        assert got == 2000
    finally:
        sw.stop()
        sw.close()
        for a, b in socks:
            a.close()
            b.close()
