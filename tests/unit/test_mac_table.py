"""The (VLAN, MAC) -> port learning table (csrc/vs_mac_table.c), one thread.

Concurrency is tested by test_mac_table_threads.py; here every behaviour is
deterministic, so the table is compared exactly against a Python model.
"""

import errno

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from vswitchd._fastpath import ffi, lib

BUCKET_SLOTS = 8      # a bucket can only be full with at least this many


def new_table(capacity: int):
    t = lib.vs_mac_table_new(capacity)
    assert t != ffi.NULL
    return ffi.gc(t, lib.vs_mac_table_free)


def mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


def stats(t) -> dict[str, int]:
    s = ffi.new("struct vs_mac_stats *")
    lib.vs_mac_table_stats(t, s)
    return {f: getattr(s, f) for f in ("learned", "moved", "aged", "flushed",
                                       "full")}


def dump(t, max_entries: int | None = None) -> dict:
    """{(vlan, mac bytes): (port, seen_s)} of every entry."""
    n = lib.vs_mac_table_count(t) if max_entries is None else max_entries
    out = ffi.new("struct vs_mac_entry[]", max(n, 1))
    got = lib.vs_mac_dump(t, out, n)
    return {(e.vlan, bytes(e.mac)): (e.port, e.seen_s)
            for e in (out[i] for i in range(got))}


def fill(t, vlan: int = 1, port: int = 1, now: int = 100) -> list[bytes]:
    """Learns new addresses until the table holds its capacity.  A bucket
    may fill before the table does, so a few addresses may be refused on
    the way; returns the ones learned."""
    learned = []
    i = 0
    while lib.vs_mac_table_count(t) < lib.vs_mac_table_capacity(t):
        r = lib.vs_mac_learn(t, vlan, mac(i), port, now)
        assert r in (lib.VS_LEARN_NEW, lib.VS_LEARN_FULL)
        if r == lib.VS_LEARN_NEW:
            learned.append(mac(i))
        i += 1
        assert i < 100 * lib.vs_mac_table_capacity(t) + 100
    return learned


# Learning and lookup.

def test_unknown_address_is_not_found():
    t = new_table(16)
    assert lib.vs_mac_lookup(t, 1, mac(1)) == lib.VS_PORT_NONE


def test_learned_address_is_found_on_its_port():
    t = new_table(16)
    assert lib.vs_mac_learn(t, 1, mac(1), 7, 100) == lib.VS_LEARN_NEW
    assert lib.vs_mac_lookup(t, 1, mac(1)) == 7
    assert lib.vs_mac_table_count(t) == 1


def test_learning_again_on_same_port_refreshes_timestamp():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 7, 100)
    assert lib.vs_mac_learn(t, 1, mac(1), 7, 100) == lib.VS_LEARN_REFRESHED
    assert lib.vs_mac_learn(t, 1, mac(1), 7, 130) == lib.VS_LEARN_REFRESHED
    assert dump(t) == {(1, mac(1)): (7, 130)}
    assert lib.vs_mac_table_count(t) == 1


def test_learning_same_mac_on_another_port_moves_it():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 7, 100)
    assert lib.vs_mac_learn(t, 1, mac(1), 9, 105) == lib.VS_LEARN_MOVED
    assert lib.vs_mac_lookup(t, 1, mac(1)) == 9
    assert dump(t) == {(1, mac(1)): (9, 105)}
    assert lib.vs_mac_table_count(t) == 1


def test_same_mac_in_two_vlans_are_distinct_entries():
    t = new_table(16)
    lib.vs_mac_learn(t, 10, mac(1), 1, 100)
    lib.vs_mac_learn(t, 20, mac(1), 2, 100)
    assert lib.vs_mac_lookup(t, 10, mac(1)) == 1
    assert lib.vs_mac_lookup(t, 20, mac(1)) == 2
    assert lib.vs_mac_lookup(t, 30, mac(1)) == lib.VS_PORT_NONE
    assert lib.vs_mac_table_count(t) == 2


def test_every_mac_byte_and_vlan_bit_distinguishes_addresses():
    t = new_table(256)
    base = bytes([0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC])
    keys = [(0xABC, base)]
    for byte in range(6):
        for bit in range(8):
            m = bytearray(base)
            m[byte] ^= 1 << bit
            keys.append((0xABC, bytes(m)))
    keys += [(0xABC ^ (1 << bit), base) for bit in range(12)]
    for port, (vlan, m) in enumerate(keys):
        assert lib.vs_mac_learn(t, vlan, m, port, 1) == lib.VS_LEARN_NEW
    for port, (vlan, m) in enumerate(keys):
        assert lib.vs_mac_lookup(t, vlan, m) == port
    assert dump(t) == {k: (port, 1) for port, k in enumerate(keys)}


def test_all_zero_mac_in_vlan_zero_is_an_ordinary_address():
    # Its packed key must not collide with the empty-slot value 0.
    t = new_table(4)
    assert lib.vs_mac_learn(t, 0, bytes(6), 3, 1) == lib.VS_LEARN_NEW
    assert lib.vs_mac_lookup(t, 0, bytes(6)) == 3
    assert dump(t) == {(0, bytes(6)): (3, 1)}


def test_only_the_12_bit_vid_of_vlan_is_used():
    t = new_table(4)
    lib.vs_mac_learn(t, 0x1000 | 5, mac(1), 3, 1)
    assert lib.vs_mac_lookup(t, 5, mac(1)) == 3
    assert dump(t) == {(5, mac(1)): (3, 1)}


# Capacity.

def test_table_full_refuses_new_addresses_but_keeps_forwarding_known_ones():
    t = new_table(32)
    known = fill(t, port=4)
    assert len(known) == 32
    before = stats(t)["full"]
    for i in range(1000, 1100):
        assert lib.vs_mac_learn(t, 1, mac(i), 5, 100) == lib.VS_LEARN_FULL
        assert lib.vs_mac_lookup(t, 1, mac(i)) == lib.VS_PORT_NONE
    assert stats(t)["full"] == before + 100
    assert lib.vs_mac_table_count(t) == 32
    for m in known:
        assert lib.vs_mac_lookup(t, 1, m) == 4


def test_full_table_still_refreshes_and_moves_known_addresses():
    t = new_table(8)
    known = fill(t, port=4, now=100)
    assert lib.vs_mac_learn(t, 1, known[0], 4, 200) == lib.VS_LEARN_REFRESHED
    assert lib.vs_mac_learn(t, 1, known[1], 6, 200) == lib.VS_LEARN_MOVED
    assert lib.vs_mac_lookup(t, 1, known[1]) == 6
    d = dump(t)
    assert d[(1, known[0])] == (4, 200)
    assert d[(1, known[1])] == (6, 200)


def test_removing_an_entry_makes_room_for_a_new_one():
    t = new_table(8)
    known = fill(t, port=4)
    assert lib.vs_mac_learn(t, 1, mac(999), 5, 100) == lib.VS_LEARN_FULL
    lib.vs_mac_learn(t, 1, known[0], 6, 100)         # move it to port 6
    assert lib.vs_mac_flush(t, -1, 6) == 1
    assert lib.vs_mac_learn(t, 1, mac(999), 5, 100) == lib.VS_LEARN_NEW
    assert lib.vs_mac_lookup(t, 1, mac(999)) == 5


def test_capacity_one_holds_exactly_one_entry():
    t = new_table(1)
    assert lib.vs_mac_table_capacity(t) == 1
    assert lib.vs_mac_learn(t, 1, mac(1), 1, 1) == lib.VS_LEARN_NEW
    assert lib.vs_mac_learn(t, 1, mac(2), 1, 1) == lib.VS_LEARN_FULL
    assert lib.vs_mac_learn(t, 2, mac(1), 1, 1) == lib.VS_LEARN_FULL
    assert lib.vs_mac_learn(t, 1, mac(1), 2, 1) == lib.VS_LEARN_MOVED
    assert lib.vs_mac_table_count(t) == 1


@pytest.mark.parametrize("capacity", [3, 100, 1000, 4097])
def test_capacity_not_power_of_two_is_kept_exactly(capacity):
    t = new_table(capacity)
    assert lib.vs_mac_table_capacity(t) == capacity
    assert len(fill(t)) == capacity
    assert lib.vs_mac_learn(t, 2, mac(0), 1, 1) == lib.VS_LEARN_FULL
    assert lib.vs_mac_table_count(t) == capacity
    assert len(dump(t, capacity + 10)) == capacity
    assert lib.vs_mac_table_check(t) == 0


@pytest.mark.parametrize("capacity", [0, lib.VS_MAC_CAPACITY_MAX + 1,
                                      0xFFFFFFFF])
def test_capacity_zero_or_too_large_is_rejected(capacity):
    assert lib.vs_mac_table_new(capacity) == ffi.NULL
    assert ffi.errno == errno.EINVAL


def test_almost_all_of_capacity_is_usable_before_any_bucket_fills():
    # Buckets are picked by hash, so one can fill before the table does;
    # with about two slots per entry that must stay rare.
    t = new_table(4096)
    refused = 0
    for i in range(4096):
        refused += lib.vs_mac_learn(t, 1, mac(i), 1, 1) == lib.VS_LEARN_FULL
    assert refused < 4096 // 20


# Aging.

def test_aging_removes_entries_older_than_aging_time():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 1, 100)
    lib.vs_mac_learn(t, 1, mac(2), 1, 150)
    assert lib.vs_mac_age(t, 399, 300) == 0       # 299 s old: kept
    assert lib.vs_mac_age(t, 400, 300) == 1       # 300 s old: removed
    assert lib.vs_mac_lookup(t, 1, mac(1)) == lib.VS_PORT_NONE
    assert lib.vs_mac_lookup(t, 1, mac(2)) == 1
    assert lib.vs_mac_table_count(t) == 1
    assert stats(t)["aged"] == 1


def test_aging_keeps_entries_refreshed_in_time():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 1, 100)
    lib.vs_mac_learn(t, 1, mac(1), 1, 350)
    assert lib.vs_mac_age(t, 400, 300) == 0
    assert lib.vs_mac_lookup(t, 1, mac(1)) == 1


def test_aging_treats_timestamps_after_now_as_fresh():
    # A worker may stamp an entry with a clock read later than the aging
    # timer's: that is a fresh entry, not one 2**32 - 1 seconds old.
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 1, 1001)
    assert lib.vs_mac_age(t, 1000, 300) == 0
    assert lib.vs_mac_age(t, 1000, 0) == 0
    assert lib.vs_mac_lookup(t, 1, mac(1)) == 1


def test_aging_works_across_clock_wraparound():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 1, 0xFFFFFFF0)
    assert lib.vs_mac_age(t, 0x10, 300) == 0      # 32 s old
    assert lib.vs_mac_age(t, 0x11C, 300) == 1     # 300 s old


def test_aging_time_zero_removes_every_entry():
    t = new_table(16)
    lib.vs_mac_learn(t, 1, mac(1), 1, 100)
    lib.vs_mac_learn(t, 1, mac(2), 1, 100)
    assert lib.vs_mac_age(t, 100, 0) == 2
    assert lib.vs_mac_table_count(t) == 0


# Flushing.

@pytest.fixture
def populated():
    """Addresses 0..5 on VLANs 10 and 20, on ports 1 (even) and 2 (odd)."""
    t = new_table(64)
    for vlan in (10, 20):
        for i in range(6):
            lib.vs_mac_learn(t, vlan, mac(i), 1 + i % 2, 100)
    return t


def test_flush_by_port_removes_only_that_ports_entries(populated):
    assert lib.vs_mac_flush(populated, -1, 2) == 6
    assert {port for port, _ in dump(populated).values()} == {1}
    assert lib.vs_mac_table_count(populated) == 6


def test_flush_by_vlan_removes_only_that_vlans_entries(populated):
    assert lib.vs_mac_flush(populated, 10, -1) == 6
    assert {vlan for vlan, _ in dump(populated)} == {20}


def test_flush_by_vlan_and_port_removes_their_intersection(populated):
    assert lib.vs_mac_flush(populated, 20, 1) == 3
    left = dump(populated)
    assert len(left) == 9
    assert not any(vlan == 20 and port == 1
                   for (vlan, _), (port, _) in left.items())


def test_flush_any_vlan_any_port_empties_the_table(populated):
    assert lib.vs_mac_flush(populated, -1, -1) == 12
    assert lib.vs_mac_table_count(populated) == 0
    assert dump(populated) == {}
    assert stats(populated)["flushed"] == 12


def test_flush_of_nothing_matching_removes_nothing(populated):
    assert lib.vs_mac_flush(populated, 30, -1) == 0
    assert lib.vs_mac_flush(populated, -1, 3) == 0
    assert lib.vs_mac_flush(populated, 10, 0xFFFFFFFF) == 0
    assert lib.vs_mac_table_count(populated) == 12


def test_flush_matches_port_numbers_above_2_to_the_31():
    t = new_table(4)
    lib.vs_mac_learn(t, 1, mac(1), 0x80000001, 1)
    assert lib.vs_mac_flush(t, -1, 1) == 0
    assert lib.vs_mac_flush(t, -1, 0x80000001) == 1


# Reporting.

def test_dump_reports_every_entry_with_vlan_mac_port_and_time():
    t = new_table(64)
    want = {}
    for i in range(20):
        vlan, m, port, now = i % 3, mac(i * 7919), i + 100, 1000 + i
        lib.vs_mac_learn(t, vlan, m, port, now)
        want[(vlan, m)] = (port, now)
    assert dump(t) == want


def test_dump_writes_at_most_max_entries():
    t = new_table(64)
    for i in range(10):
        lib.vs_mac_learn(t, 1, mac(i), 1, 1)
    out = ffi.new("struct vs_mac_entry[]", 10)
    assert lib.vs_mac_dump(t, out, 4) == 4
    assert lib.vs_mac_dump(t, out, 0) == 0
    assert lib.vs_mac_dump(t, out, 10) == 10


def test_stats_count_learned_moved_aged_flushed_and_full():
    t = new_table(3)
    assert stats(t) == dict(learned=0, moved=0, aged=0, flushed=0, full=0)
    for i in range(3):
        lib.vs_mac_learn(t, 1, mac(i), 1, 10)
    lib.vs_mac_learn(t, 1, mac(0), 1, 11)        # refresh: not counted
    lib.vs_mac_learn(t, 1, mac(0), 2, 12)        # moved
    lib.vs_mac_learn(t, 1, mac(1), 2, 12)        # moved
    lib.vs_mac_learn(t, 1, mac(9), 1, 12)        # full
    lib.vs_mac_age(t, 20, 10)                    # ages mac(2), seen at 10
    lib.vs_mac_flush(t, -1, 2)                   # flushes mac(0), mac(1)
    assert stats(t) == dict(learned=3, moved=2, aged=1, flushed=2, full=1)


# The table against a model.

KEYS = st.tuples(st.sampled_from([0, 1, 4095]),
                 st.sampled_from([bytes(6), b"\xff" * 6]
                                 + [mac(i) for i in range(1, 40)]))
PORTS = st.integers(0, 4)


class MacTableModel(RuleBasedStateMachine):
    """Single-threaded, the table must behave exactly like a dict, except
    that it may refuse a new address with VS_LEARN_FULL before it holds
    'capacity' entries when the address's bucket is full."""

    @initialize(capacity=st.sampled_from([1, 3, 8, 17, 40]),
                now=st.sampled_from([0, 1000, 2**32 - 20]))
    def create(self, capacity, now):
        self.capacity = capacity
        self.t = new_table(capacity)
        self.now = now
        self.model: dict = {}          # (vlan, mac) -> [port, seen_s]
        self.events = dict(learned=0, moved=0, aged=0, flushed=0, full=0)

    @rule(dt=st.integers(0, 50))
    def tick(self, dt):
        self.now = (self.now + dt) & 0xFFFFFFFF

    @rule(key=KEYS, port=PORTS)
    def learn(self, key, port):
        vlan, m = key
        r = lib.vs_mac_learn(self.t, vlan, m, port, self.now)
        if key in self.model:
            old_port = self.model[key][0]
            want = (lib.VS_LEARN_REFRESHED if old_port == port
                    else lib.VS_LEARN_MOVED)
            assert r == want
            self.events["moved"] += r == lib.VS_LEARN_MOVED
            self.model[key] = [port, self.now]
        elif len(self.model) == self.capacity:
            assert r == lib.VS_LEARN_FULL
            self.events["full"] += 1
        elif r == lib.VS_LEARN_FULL:
            # Only a full bucket may refuse below capacity.
            assert len(self.model) >= BUCKET_SLOTS
            self.events["full"] += 1
        else:
            assert r == lib.VS_LEARN_NEW
            self.model[key] = [port, self.now]
            self.events["learned"] += 1

    @rule(key=KEYS)
    def lookup(self, key):
        want = self.model.get(key, [lib.VS_PORT_NONE])[0]
        assert lib.vs_mac_lookup(self.t, *key) == want

    @rule(aging_s=st.integers(0, 200))
    def age(self, aging_s):
        def old(seen):
            age = (self.now - seen) & 0xFFFFFFFF
            return age < 2**31 and age >= aging_s
        gone = [k for k, (_, seen) in self.model.items() if old(seen)]
        assert lib.vs_mac_age(self.t, self.now, aging_s) == len(gone)
        for k in gone:
            del self.model[k]
        self.events["aged"] += len(gone)

    @precondition(lambda self: self.model)
    @rule(vlan=st.sampled_from([-1, 0, 1, 4095, 7]),
          port=st.sampled_from([-1, 0, 1, 2, 3, 4, 9]))
    def flush(self, vlan, port):
        gone = [k for k, (p, _) in self.model.items()
                if vlan in (-1, k[0]) and port in (-1, p)]
        assert lib.vs_mac_flush(self.t, vlan, port) == len(gone)
        for k in gone:
            del self.model[k]
        self.events["flushed"] += len(gone)

    @invariant()
    def matches_model(self):
        assert lib.vs_mac_table_check(self.t) == 0
        assert lib.vs_mac_table_count(self.t) == len(self.model)
        assert lib.vs_mac_table_count(self.t) <= self.capacity
        assert dump(self.t) == {k: tuple(v) for k, v in self.model.items()}
        assert stats(self.t) == self.events


TestMacTableModel = MacTableModel.TestCase
TestMacTableModel.settings = settings(max_examples=150,
                                      stateful_step_count=60,
                                      deadline=None)


def at(port: int, vtep: int) -> int:
    return port | (vtep << 16)       # VS_MAC_AT(): a remote address behind an overlay port


def test_a_static_entry_never_ages():
    t = new_table(64)
    lib.vs_mac_learn(t, 10, mac(1), at(9, 2), lib.VS_MAC_STATIC)
    lib.vs_mac_learn(t, 10, mac(2), 3, 100)
    assert lib.vs_mac_age(t, 100_000, 300) == 1
    assert lib.vs_mac_lookup(t, 10, mac(1)) == at(9, 2)
    assert dump(t)[(10, mac(1))] == (at(9, 2), lib.VS_MAC_STATIC)


def test_overlay_traffic_neither_moves_nor_refreshes_a_static_entry():
    t = new_table(64)
    lib.vs_mac_learn(t, 10, mac(1), at(9, 2), lib.VS_MAC_STATIC)
    # From the overlay, behind another VTEP of the same port, or the same one.
    assert lib.vs_mac_learn(t, 10, mac(1), at(9, 3), 50) == lib.VS_LEARN_REFRESHED
    assert lib.vs_mac_learn(t, 10, mac(1), at(9, 2), 50) == lib.VS_LEARN_REFRESHED
    assert dump(t)[(10, mac(1))] == (at(9, 2), lib.VS_MAC_STATIC)
    # The control plane itself may move it to another VTEP.
    lib.vs_mac_learn(t, 10, mac(1), at(9, 3), lib.VS_MAC_STATIC)
    assert lib.vs_mac_lookup(t, 10, mac(1)) == at(9, 3)


def test_a_frame_from_a_local_port_moves_a_static_entry_and_it_ages_again():
    t = new_table(64)
    lib.vs_mac_learn(t, 10, mac(1), at(9, 2), lib.VS_MAC_STATIC)
    assert lib.vs_mac_learn(t, 10, mac(1), 4, 50) == lib.VS_LEARN_MOVED     # the VM moved here
    assert dump(t)[(10, mac(1))] == (4, 50)
    assert lib.vs_mac_age(t, 400, 300) == 1
