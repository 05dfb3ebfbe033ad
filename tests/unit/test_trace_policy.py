"""Trace through the ACL and bandwidth-limit stages (issue 10 + 11): the
stages say what they decided and change nothing: no session opened or
refreshed, no rule counted, no bucket charged, no frame held."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.unit.harness import Harness
from tests.unit.test_acl import A_IP, A_MAC, B_IP, B_MAC, PEER, VM, Policy
from vswitchd.fastpath_acl import Sessions
from vswitchd.fastpath_observe import trace


@pytest.fixture
def p():
    h = Harness()
    pol = Policy(h)
    yield pol
    pol.close()
    h.close()


def test_trace_of_a_stateful_allow_opens_no_session(p):
    acl = p.set({"weight": 100, "direction": "out", "action": "allow", "protocol": "tcp",
                 "stateful": True, "idle_timeout_s": 60},
                {"weight": 1, "direction": "in", "action": "deny"})
    sessions = Sessions(p.h.switch.acl_sessions_ptr)
    syn = bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP)
                / TCP(sport=40000, dport=80, flags="S"))
    before = acl.counters()
    t = trace(p.h.switch, VM, syn, now_s=p.h.now)
    acl_notes = [d for s, d in t.notes if s == "acl"]
    assert "port 0 out: rule #0 (weight 100): allow, stateful" in acl_notes, t.notes
    assert "port 0 out: would open a session" in acl_notes
    assert dict(t.egress) == {PEER: 1}
    assert sessions.live == 0 and acl.counters() == before

    reply = bytes(Ether(src=B_MAC, dst=A_MAC) / IP(src=B_IP, dst=A_IP)
                  / TCP(sport=80, dport=40000, flags="SA"))
    t = trace(p.h.switch, PEER, reply, now_s=p.h.now)
    assert t.egress == () and t.drops == ((VM, "acl_deny"),), t.notes


def test_trace_through_a_bandwidth_limit_charges_and_holds_nothing(p):
    p.h.set(VM, max_bps_out=8000, max_burst_bytes=100)
    frame = bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP) / TCP())
    for _ in range(5):
        t = trace(p.h.switch, VM, frame, now_s=p.h.now)
        assert dict(t.egress) == {PEER: 1}, t.notes
        assert any(s == "qos" for s, _ in t.notes), t.notes
    assert p.h.counters(VM)["qos_held_out"] == 0
    got = p.h.inject(VM, frame)          # the real bucket is still full
    assert got[PEER]
