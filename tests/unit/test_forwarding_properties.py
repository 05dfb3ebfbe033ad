"""Properties of the forwarding pipeline over random frame streams: a frame
never leaves through the port it came in on, and never crosses VLANs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import BROADCAST, eth, mac, parse_vlan
from tests.unit.harness import Harness

# Port layout: access ports on VLANs 10/10/20, a trunk allowing 10,20,30
# with native 10, and a trunk allowing only 30.
PORTS = {
    0: {"mode": "access", "access_vlan": 10},
    1: {"mode": "access", "access_vlan": 10},
    2: {"mode": "access", "access_vlan": 20},
    3: {"mode": "trunk", "allowed": ((10, 10), (20, 20), (30, 30)), "native_vlan": 10},
    4: {"mode": "trunk", "allowed": ((30, 30),), "native_vlan": 0},
}


def ingress_vlan(port: int, vid: int | None) -> int | None:
    """The VLAN a frame enters on ``port``, by the 802.1Q rules; None = dropped."""
    p = PORTS[port]
    tagged = vid not in (None, 0)
    if p["mode"] == "access":
        return p["access_vlan"] if not tagged or vid == p["access_vlan"] else None
    if not tagged:
        return p["native_vlan"] or None
    return vid if any(lo <= vid <= hi for lo, hi in p["allowed"]) else None


def egress_vlan(port: int, frame: bytes) -> int:
    p = PORTS[port]
    vid = parse_vlan(frame)
    if p["mode"] == "access":
        assert vid is None, "access ports egress untagged"
        return p["access_vlan"]
    return vid if vid is not None else p["native_vlan"]


frame_st = st.tuples(
    st.sampled_from(sorted(PORTS)),                    # ingress port
    st.one_of(st.just(None), st.sampled_from([0, 10, 20, 30, 40, 4095])),   # tag
    st.one_of(st.just(BROADCAST), st.integers(1, 12).map(mac)),             # dst
    st.integers(1, 12).map(mac),                                            # src
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_st, min_size=1, max_size=40))
def test_random_stream_never_reaches_ingress_port_or_another_vlan(stream) -> None:
    h = Harness()
    try:
        for pid, params in PORTS.items():
            h.add(pid, **params)
        for seq, (port, vid, dst, src) in enumerate(stream):
            payload = seq.to_bytes(2, "big") + b"\x00" * 44
            got = h.inject(port, eth(dst, src, vid=vid, payload=payload))
            vlan = ingress_vlan(port, vid)
            assert got[port] == [], "sent back out of its ingress port"
            for out, frames in got.items():
                for f in frames:
                    assert vlan is not None, "a frame that should drop was forwarded"
                    assert egress_vlan(out, f) == vlan, "crossed VLANs"
                    assert f[-46:-44] == seq.to_bytes(2, "big")
    finally:
        h.close()
