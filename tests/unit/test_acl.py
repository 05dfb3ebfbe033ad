"""Port ACLs and bandwidth limits through the real C pipeline (socketpair
ports, a fake clock): match fields, weight order, defaults, meters,
stateful sessions, fragments, truncated headers, policers, and the tuple
space classifier agreeing with a linear reference."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from tests.unit.harness import Harness
from vswitchd.acl_config import AclRule, parse_rule, port_rules
from vswitchd.fastpath_acl import Acl, Sessions, classify

A_MAC, B_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
A_IP, B_IP = "10.0.0.1", "10.0.0.2"
VM, PEER = 0, 1         # port ids: the VM under policy, and its peer


def rules(*tables: dict, acl: str = "t") -> tuple[AclRule, ...]:
    parsed = [parse_rule(acl, dict({"name": f"r{i}"}, **t), f"acls.{acl}.rules[{i}]")
              for i, t in enumerate(tables)]
    from vswitchd.acl_config import AclSet
    from vswitchd.config import PortConfig
    pc = PortConfig(name="vm", type="tap", ifname="vm", acls=(acl,))
    return port_rules(pc.name, pc.acls, {acl: AclSet(acl, tuple(parsed))})


class Policy:
    """A harness whose port VM has an ACL (and limits) under test."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.acls: list[Acl] = []
        h.add(VM, mode="access", access_vlan=10)
        h.add(PEER, mode="access", access_vlan=10)
        self.learn()

    def learn(self) -> None:
        # Both hosts known: frames go to one port, not flooded.
        self.h.inject(VM, bytes(Ether(src=A_MAC, dst="ff:ff:ff:ff:ff:ff") / IP()))
        self.h.inject(PEER, bytes(Ether(src=B_MAC, dst="ff:ff:ff:ff:ff:ff") / IP()))

    def set(self, *tables: dict, default: str = "allow", **params: object) -> Acl:
        acl = Acl(rules(*tables), default, 1)
        self.acls.append(acl)
        self.h.set(VM, acl=acl.c_acl, **params)
        return acl

    def out(self, l3) -> bool:
        """Whether a frame from the VM reaches the peer."""
        got = self.h.inject(VM, bytes(Ether(src=A_MAC, dst=B_MAC) / l3))
        return bool(got[PEER])

    def into(self, l3) -> bool:
        """Whether a frame toward the VM reaches it."""
        got = self.h.inject(PEER, bytes(Ether(src=B_MAC, dst=A_MAC) / l3))
        return bool(got[VM])

    def close(self) -> None:
        self.h.set(VM, acl=None)
        for acl in self.acls:
            acl.free()


@pytest.fixture
def p():
    h = Harness()
    pol = Policy(h)
    yield pol
    pol.close()
    h.close()


def test_deny_in_by_remote_cidr_drops_only_traffic_toward_the_vm(p):
    p.set({"weight": 10, "direction": "in", "action": "deny", "remote_ip": "10.0.0.0/24"})
    assert not p.into(IP(src=B_IP, dst=A_IP) / ICMP())
    assert p.into(IP(src="10.0.1.2", dst=A_IP) / ICMP())
    assert p.out(IP(src=A_IP, dst=B_IP) / ICMP())
    assert p.h.counters(VM)["acl_deny"] == 1        # counted on the port whose policy it is


def test_higher_weight_decides_and_meters_count_without_deciding(p):
    acl = p.set({"weight": 200, "direction": "in", "action": "allow", "protocol": "tcp",
                 "local_port": "22", "remote_ip": "10.0.0.0/8"},
                {"weight": 150, "direction": "both", "action": "meter"},
                {"weight": 1, "direction": "both", "action": "deny"})
    assert p.into(IP(src=B_IP, dst=A_IP) / TCP(dport=22))
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(dport=80))
    assert not p.into(IP(src="192.168.0.1", dst=A_IP) / TCP(dport=22))
    c = acl.counters()
    # ssh-in decided once; the meter (weight 150) counted the two frames
    # the deny decided, not the one ssh-in (weight 200) decided above it.
    assert [pk for pk, _ in c.rules] == [1, 2, 2]


def test_default_deny_counts_under_acl_default(p):
    acl = p.set({"weight": 5, "direction": "out", "action": "allow", "protocol": "udp",
                 "remote_port": "53"}, default="deny")
    assert p.out(IP(src=A_IP, dst=B_IP) / UDP(dport=53))
    assert not p.out(IP(src=A_IP, dst=B_IP) / UDP(dport=54))
    assert p.h.counters(VM)["acl_default"] == 1
    assert acl.counters().default["out"][0] == 1


@pytest.mark.parametrize("field,value,hit,miss", [
    ("local_mac", A_MAC, Ether(src=A_MAC, dst=B_MAC), Ether(src="02:00:00:00:00:0c", dst=B_MAC)),
    ("remote_mac", B_MAC, Ether(src=A_MAC, dst=B_MAC), Ether(src=A_MAC, dst="02:00:00:00:00:0c")),
])
def test_mac_fields_match_the_vms_side_and_the_other(p, field, value, hit, miss):
    p.set({"weight": 5, "direction": "out", "action": "deny", field: value})
    frame = IP(src=A_IP, dst=B_IP) / ICMP()
    assert not p.h.inject(VM, bytes(hit / frame))[PEER]
    p.h.ports[PEER].received()
    # A frame the rule does not match passes (flooded: its destination may be unknown).
    assert p.h.inject(VM, bytes(miss / frame))[PEER]


def test_local_ip_ports_and_icmp_type_read_from_the_vms_side(p):
    p.set({"weight": 9, "direction": "both", "action": "deny", "protocol": "tcp",
           "local_ip": A_IP, "local_port": "1000-2000"},
          {"weight": 8, "direction": "both", "action": "deny", "protocol": "icmp",
           "icmp_type": 8})
    assert not p.out(IP(src=A_IP, dst=B_IP) / TCP(sport=1500, dport=80))    # local = source
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=80, dport=1999))   # local = destination
    assert p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=1500, dport=2001))
    assert not p.out(IP(src=A_IP, dst=B_IP) / ICMP(type=8))
    assert p.out(IP(src=A_IP, dst=B_IP) / ICMP(type=0))


def test_ipv6_cidr_vlan_and_ethertype_fields(p):
    p.set({"weight": 9, "direction": "out", "action": "deny", "remote_ip": "fd00::/64"},
          {"weight": 8, "direction": "out", "action": "deny", "vlan": 10,
           "ethertype": "0x88b5"})
    assert not p.out(IPv6(src="fd00::1", dst="fd00::2") / UDP())
    assert p.out(IPv6(src="fd00::1", dst="fd01::2") / UDP())
    frame = Ether(src=A_MAC, dst=B_MAC, type=0x88B5) / (b"x" * 46)
    assert not p.h.inject(VM, bytes(frame))[PEER]
    # The VLAN is the classified one: the access port's, not a tag's.
    p.set({"weight": 8, "direction": "out", "action": "deny", "vlan": 11})
    assert p.h.inject(VM, bytes(frame))[PEER]


def test_an_ipv4_rule_never_matches_ipv6(p):
    p.set({"weight": 9, "direction": "out", "action": "deny", "remote_ip": "0.0.0.0/0"})
    assert not p.out(IP(src=A_IP, dst=B_IP) / UDP())
    assert p.out(IPv6(src="fd00::1", dst="fd00::2") / UDP())


def test_non_first_fragments_match_only_l3_fields(p):
    p.set({"weight": 9, "direction": "out", "action": "deny", "protocol": "udp",
           "remote_port": "53"},
          {"weight": 8, "direction": "out", "action": "deny", "protocol": "tcp"})
    frag_udp = IP(src=A_IP, dst=B_IP, proto=17, frag=10) / (b"\x00\x35" * 20)
    assert p.out(frag_udp)           # looks like port 53, but carries no UDP header
    frag_tcp = IP(src=A_IP, dst=B_IP, proto=6, frag=10) / (b"x" * 40)
    assert not p.out(frag_tcp)       # the protocol is an L3 field


def test_a_cut_short_l4_header_is_dropped_when_a_deny_could_match(p):
    p.set({"weight": 9, "direction": "out", "action": "deny", "protocol": "tcp",
           "remote_port": "22"})
    cut = bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP, proto=6))[:14 + 20 + 2]
    assert not p.h.inject(VM, cut)[PEER]
    assert p.h.counters(VM)["acl_unparsable"] == 1
    # No deny needs L4 here: the same cut frame passes.
    p.set({"weight": 9, "direction": "out", "action": "deny", "protocol": "udp",
           "remote_ip": "10.9.9.9"})
    assert p.h.inject(VM, cut)[PEER]


def test_stateful_out_lets_replies_in_and_nothing_else(p):
    p.set({"weight": 100, "direction": "out", "action": "allow", "protocol": "tcp",
           "stateful": True, "idle_timeout_s": 60},
          {"weight": 1, "direction": "in", "action": "deny"})
    sessions = Sessions(p.h.switch.acl_sessions_ptr)
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=80, dport=40000, flags="S"))
    assert p.out(IP(src=A_IP, dst=B_IP) / TCP(sport=40000, dport=80, flags="S"))
    assert p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=80, dport=40000, flags="SA"))
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=80, dport=40001, flags="SA"))
    [s] = sessions.dump(p.h.now * 10**9)
    assert (s.local_ip, s.local_port, s.remote_ip, s.remote_port) == (A_IP, 40000, B_IP, 80)
    assert set(s.tcp) == {"syn_out", "syn_in"} and s.timeout_s == 60
    # Idle past its timeout: the return path closes.
    p.h.now += 61
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=80, dport=40000, flags="A"))
    assert sessions.expire(p.h.now * 10**9) == {VM: 1}


def test_tcp_sessions_close_sooner_after_fin_from_both_sides(p):
    p.set({"weight": 100, "direction": "out", "action": "allow", "protocol": "tcp",
           "stateful": True, "idle_timeout_s": 3600},
          {"weight": 1, "direction": "in", "action": "deny"})
    assert p.out(IP(src=A_IP, dst=B_IP) / TCP(sport=1, dport=2, flags="S"))
    assert p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=2, dport=1, flags="SA"))
    assert p.out(IP(src=A_IP, dst=B_IP) / TCP(sport=1, dport=2, flags="FA"))
    assert p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=2, dport=1, flags="FA"))
    p.h.now += 11
    assert not p.into(IP(src=B_IP, dst=A_IP) / TCP(sport=2, dport=1, flags="A"))


def test_a_full_session_table_denies_new_flows_and_keeps_old_ones():
    h = Harness()
    h.switch.set_acl_sessions(16)
    p = Policy(h)
    try:
        p.set({"weight": 100, "direction": "out", "action": "allow", "protocol": "udp",
               "stateful": True},
              {"weight": 1, "direction": "in", "action": "deny"})
        for port in range(16):
            assert p.out(IP(src=A_IP, dst=B_IP) / UDP(sport=port + 1000, dport=53))
        assert not p.out(IP(src=A_IP, dst=B_IP) / UDP(sport=5000, dport=53))
        assert h.counters(VM)["acl_sessions_full"] == 1
        assert p.into(IP(src=B_IP, dst=A_IP) / UDP(sport=53, dport=1007))
        assert p.out(IP(src=A_IP, dst=B_IP) / UDP(sport=1007, dport=53))
    finally:
        p.close()
        h.close()


def test_prune_drops_sessions_of_rules_that_are_gone(p):
    acl = p.set({"weight": 100, "direction": "out", "action": "allow", "protocol": "udp",
                 "stateful": True})
    assert p.out(IP(src=A_IP, dst=B_IP) / UDP(sport=7, dport=53))
    sessions = Sessions(p.h.switch.acl_sessions_ptr)
    keep = [r for r in acl.rules]
    from vswitchd.fastpath_acl import rule_id
    assert sessions.prune(VM, [rule_id(keep[0])]) == 0
    assert sessions.prune(VM, []) == 1
    assert sessions.count(0) == {}


def test_bandwidth_limit_sends_the_burst_holds_the_excess_and_drops_beyond(p):
    # 8 Mbit/s = 1 MB/s: a 1,000-byte frame costs 1 ms; a 10,000-byte
    # bucket lets 10 through at once, the next 50 wait (up to 50 ms), the
    # rest would wait longer and are dropped.
    p.h.set(VM, max_bps_out=8_000_000, max_burst_bytes=10_000)
    frame = bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP) / UDP()
                  / (b"x" * (1000 - 42)))
    for _ in range(80):
        p.h.ports[VM].send(frame)
    p.h.run()
    assert len(p.h.ports[PEER].received()) == 10
    c = p.h.counters(VM)
    assert c["qos_out"] == 20 and c["qos_dropped_out_bytes"] == 20_000
    p.h.now += 1            # the held frames are due: sent, in order, by the next poll
    p.h.run()
    held = p.h.ports[PEER].received()
    assert len(held) == 50 and all(f == frame for f in held)
    assert p.out(IP(src=A_IP, dst=B_IP) / UDP())
    assert p.into(IP(src=B_IP, dst=A_IP) / UDP())   # no limit toward the VM


def test_gso_super_frames_are_charged_for_every_segment():
    h = Harness()
    try:
        pol = Policy(h)
        h.set(VM, max_bps_out=8_000_000, max_burst_bytes=20_000, vnet_hdr_len=10,
              offload_csum=True, offload_tso=True)
        h.set(PEER, vnet_hdr_len=10, offload_csum=True, offload_tso=True)
        import struct
        payload = b"x" * 14480
        frame = bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP)
                      / TCP(sport=1, dport=2, flags="A") / payload)
        # 10 segments of 1448: 14,480 + 10 * 54 header bytes on the wire,
        # 15 ms at 1 MB/s: one leaves, three wait, the fifth would wait
        # 55 ms and is dropped.
        wire = len(frame) + 9 * 54
        vnet = struct.pack("=BBHHHH", 1, 1, 54, 1448, 34, 16)
        for _ in range(5):
            h.ports[VM].send(frame, vnet)
        h.run()
        assert h.counters(VM)["qos_dropped_out_bytes"] == wire
        pol.close()
    finally:
        h.close()


def reference(rs: tuple[AclRule, ...], key: dict, direction: str) -> int | None:
    """The first allow/deny rule in weight order matching ``key``: the
    semantics, written as plainly as possible."""
    for i, r in enumerate(rs):
        if r.action == "meter" or direction not in r.directions:
            continue
        if r.remote_ip is not None and key["remote"] not in r.remote_ip:
            continue
        if r.protocol is not None and key["proto"] != r.protocol:
            continue
        if r.local_port is not None and not r.local_port[0] <= key["lport"] <= r.local_port[1]:
            continue
        if r.remote_port is not None and not (r.remote_port[0] <= key["rport"]
                                              <= r.remote_port[1]):
            continue
        return i
    return None


@pytest.mark.parametrize("n_rules", [10, 100, 1000])
def test_tuple_space_search_agrees_with_the_linear_semantics(n_rules):
    import ipaddress
    rng = random.Random(n_rules)
    tables, weights = [], rng.sample(range(1, 60000), n_rules)
    for w in weights:
        t: dict = {"weight": w, "direction": rng.choice(["in", "out", "both"]),
                   "action": rng.choice(["allow", "deny", "deny", "meter"])}
        if rng.random() < 0.7:
            prefix = rng.choice([16, 24, 32])
            t["remote_ip"] = f"10.{rng.randrange(4)}.{rng.randrange(4)}.0/{prefix}"
        if rng.random() < 0.6:
            t["protocol"] = rng.choice(["tcp", "udp"])
            if rng.random() < 0.7:
                lo = rng.randrange(0, 2000)
                t["local_port"] = f"{lo}-{lo + rng.randrange(0, 300)}"
            if rng.random() < 0.3:
                t["remote_port"] = str(rng.randrange(0, 2000))
        tables.append(t)
    rs = rules(*tables)
    acl = Acl(rs, "allow", 1)
    try:
        assert (acl.n_tables("in") > 0) == (n_rules > 16)
        for _ in range(2000):
            remote = ipaddress.ip_address(f"10.{rng.randrange(4)}.{rng.randrange(4)}."
                                          f"{rng.randrange(4)}")
            proto = rng.choice([6, 17])
            lport, rport = rng.randrange(0, 2300), rng.randrange(0, 2000)
            direction = rng.choice(["in", "out"])
            l4 = (TCP if proto == 6 else UDP)
            if direction == "out":
                frame = Ether() / IP(src=A_IP, dst=str(remote)) / l4(sport=lport, dport=rport)
            else:
                frame = Ether() / IP(src=str(remote), dst=A_IP) / l4(sport=rport, dport=lport)
            want = reference(rs, {"remote": remote, "proto": proto, "lport": lport,
                                  "rport": rport}, direction)
            action, index = classify(acl, bytes(frame), 10, direction)
            assert index == want, (direction, remote, proto, lport, rport)
            assert action == ("allow" if want is None else rs[want].action)
            # The workers' path, twice: through the decision cache, then from it.
            for _ in range(2):
                assert classify(acl, bytes(frame), 10, direction, counting_as=0) == (action,
                                                                                     index)
    finally:
        acl.free()
