"""Mirrors at run time: C slots, their counters, `vswitchctl mirror show`.

The config says which mirrors exist ([mirrors.NAME], vswitchd/mirror_config.py);
this keeps each one's slot in the fast path (stable while the mirror
exists, so its counters survive reloads that change it) and turns a
mirror's port names into the port ids of the snapshot being published.  A
mirror whose output port is absent (its interface vanished) is left out of
the snapshot until the port is back; an absent selected port selects
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vswitchd.fastpath import Switch
from vswitchd.fastpath_observe import MAX_MIRRORS, MirrorParams, MirrorStats, mirror_stats
from vswitchd.mirror_config import MirrorConfig


class MirrorTable:
    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        # Counters of a slot when its mirror got it: C never resets them.
        self._baseline: dict[int, MirrorStats] = {}

    def params(self, fast: Switch, mirrors: tuple[tuple[str, MirrorConfig], ...],
               port_ids: Mapping[str, int]) -> list[MirrorParams]:
        """The C mirrors for a snapshot whose ports are ``port_ids``."""
        wanted = dict(mirrors)
        for name in list(self._slots):
            if name not in wanted:
                del self._slots[name]
        out = []
        for name, m in mirrors:
            if name not in self._slots:
                used = set(self._slots.values())
                slot = next(i for i in range(MAX_MIRRORS) if i not in used)
                self._slots[name] = slot
                self._baseline[slot] = mirror_stats(fast, slot)
            if m.output_port not in port_ids:
                continue
            out.append(MirrorParams(
                id=self._slots[name], output_port=port_ids[m.output_port],
                src_ports=tuple(port_ids[p] for p in m.select_src_ports if p in port_ids),
                dst_ports=tuple(port_ids[p] for p in m.select_dst_ports if p in port_ids),
                vlans=m.select_vlans, snaplen=m.snaplen))
        return out

    def names(self) -> dict[int, str]:
        """Slot -> mirror name, for trace notes."""
        return {slot: name for name, slot in self._slots.items()}

    def stats(self, fast: Switch, name: str) -> MirrorStats:
        slot = self._slots.get(name)
        if slot is None:
            return MirrorStats()
        now, base = mirror_stats(fast, slot), self._baseline.get(slot, MirrorStats())
        return MirrorStats(now.packets - base.packets, now.dropped - base.dropped)

    def show(self, fast: Switch, mirrors: tuple[tuple[str, MirrorConfig], ...],
             present: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`vswitchctl mirror show`: every mirror with its counters."""
        rows = []
        for name, m in mirrors:
            s = self.stats(fast, name)
            rows.append({"name": name, "output_port": m.output_port,
                         "select_src_ports": list(m.select_src_ports),
                         "select_dst_ports": list(m.select_dst_ports),
                         "select_vlans": list(m.select_vlans), "snaplen": m.snaplen,
                         "active": m.output_port in present,
                         "packets": s.packets, "dropped": s.dropped})
        return rows
