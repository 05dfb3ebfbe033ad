"""What an operator is shown of a netdev port's rx path: which one it got
(a PACKET_MMAP ring, TPACKET_V3 or V2, or recvmmsg), and the ring's
counters summed over the port's queues.

The path shown is the one the kernel gave, not the one configured: a port
asked for `rx_ring = "v3"` whose kernel refused the ring reads with
recvmmsg, and says "off".

Threads.  ``read()`` is for the event loop thread only, the thread that owns
the ports and frees their rings: reading the kernel's counters
(PACKET_STATISTICS) resets them, and the ring adds them to its totals
without a lock (csrc/vs_ring.c ``vs_ring_get_stats``), so two threads
reading at once could lose counts, and a thread racing a port's removal
could read a freed ring.  Other threads (the Prometheus exporter's) read
the last ``RxRingReport`` the loop thread took: an immutable value,
replaced whole, that outlives the ring it describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vswitchd.fastpath import RING_STATS, Ring

OFF = "off"      # no ring: the queue is read with recvmmsg
MIXED = "mixed"  # the port's queues did not all get the same ring

# Help text per counter (struct vs_ring_stats), for the exporter and docs.
RING_STATS_HELP: dict[str, str] = {
    "blocks": "Ring blocks (TPACKET_V2: frame slots) the workers consumed",
    "frames": "Frames the workers took from the ring",
    "truncated": "Frames the kernel clamped to fit a ring slot (snaplen < length); "
                 "forwarding drops them as oversize",
    "vlan_restored": "Frames whose 802.1Q tag, stripped by the kernel, was put back",
    "kernel_packets": "Frames the kernel offered the ring, dropped ones included "
                      "(PACKET_STATISTICS)",
    "kernel_drops": "Frames the kernel dropped because the ring was full "
                    "(PACKET_STATISTICS)",
    "kernel_freezes": "Times the kernel found the TPACKET_V3 ring full and froze it "
                      "(PACKET_STATISTICS)",
}
assert set(RING_STATS_HELP) == set(RING_STATS)


def path_name(version: int | None) -> str:
    """"v3", "v2", or "off" for a queue with no ring."""
    return OFF if version is None else f"v{version}"


@dataclass(frozen=True)
class RxRingReport:
    """The rx path of one packet port, read at one moment.

    ``queues`` has one entry per rx queue, in queue order: that queue's
    ring counters, or None when it reads with recvmmsg.  ``versions`` is
    aligned with it (None: no ring).
    """

    versions: tuple[int | None, ...]
    queues: tuple[Mapping[str, int] | None, ...]

    @property
    def path(self) -> str:
        """"v3" or "v2" when every queue has that ring, "off" when none has
        one, "mixed" otherwise (the per-queue view says which is which)."""
        names = {path_name(v) for v in self.versions}
        if len(names) == 1:
            return names.pop()
        return OFF if not names else MIXED

    @property
    def has_ring(self) -> bool:
        return any(q is not None for q in self.queues)

    @property
    def totals(self) -> dict[str, int] | None:
        """Each counter summed over the queues that have a ring; None if
        none has."""
        rings = [q for q in self.queues if q is not None]
        if not rings:
            return None
        return {name: sum(q[name] for q in rings) for name in RING_STATS}

    def to_json(self) -> dict[str, Any]:
        """The `vswitchctl show --json` fields of a port."""
        return {
            "rx_ring": self.path,
            "rx_ring_stats": self.totals,
            "rx_ring_queues": [{"rx_ring": path_name(v), **(q or {})}
                               for v, q in zip(self.versions, self.queues, strict=True)],
        }


def read(rings: Sequence[Ring | None]) -> RxRingReport:
    """Reads the counters of a port's rings (``PortIO.rings``, one per rx
    queue, None: no ring).  Event loop thread only; see the module
    docstring."""
    versions: list[int | None] = []
    queues: list[Mapping[str, int] | None] = []
    for ring in rings:
        # A ring in a port the loop still owns is always attached; the
        # check keeps a broken invariant from killing the timer task that
        # calls this.
        if ring is None or not ring.attached:
            versions.append(None)
            queues.append(None)
        else:
            versions.append(ring.version)
            queues.append(ring.stats())
    return RxRingReport(tuple(versions), tuple(queues))


# Fields of a port that has no rx path of its own to show (TAP, absent).
NO_RX_RING: dict[str, Any] = {"rx_ring": None, "rx_ring_stats": None, "rx_ring_queues": None}
