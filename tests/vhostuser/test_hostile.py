"""What each hostile attack writes into the rings, checked without a back end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vhostuser.frontend import NET_HDR, TXQ, Options, VirtioNetFrontend
from tests.vhostuser.hostile import ATTACKS, BY_NAME
from tests.vhostuser.virtq import DESC, DESC_F_INDIRECT, DESC_F_NEXT, SplitQueue


@pytest.fixture
def fe() -> Iterator[VirtioNetFrontend]:
    f = VirtioNetFrontend("/nonexistent", Options(queue_size=16, mem_size=1 << 20))
    f.allocate()
    yield f
    f.close()


def desc(q: SplitQueue, i: int) -> tuple[int, int, int, int]:
    addr, length, flags, nxt = DESC.unpack_from(q.mem.mm, q.desc_off + 16 * i)
    return int(addr), int(length), int(flags), int(nxt)


def in_memory(fe: VirtioNetFrontend, addr: int, length: int) -> bool:
    assert fe.mem is not None
    return fe.mem.gpa_base <= addr and addr + length <= fe.mem.gpa_base + fe.mem.size


def test_attack_names_are_unique() -> None:
    assert len(BY_NAME) == len(ATTACKS)


@pytest.mark.parametrize("name", ["addr_beyond_memory", "addr_zero_below_memory",
                                  "addr_straddles_end", "addr_wraps_64_bits", "len_4_gib"])
def test_address_attacks_publish_a_descriptor_outside_the_memory_table(
        fe: VirtioNetFrontend, name: str) -> None:
    BY_NAME[name].run(fe)
    q = fe.queues[TXQ]
    assert q.mem.u16[(q.avail_off + 2) // 2] == 1
    addr, length, _, _ = desc(q, 0)
    assert not in_memory(fe, addr, length)


def test_chain_loops_points_back_at_its_head(fe: VirtioNetFrontend) -> None:
    BY_NAME["chain_loops"].run(fe)
    q = fe.queues[TXQ]
    assert desc(q, 0)[2:] == (DESC_F_NEXT, 1) and desc(q, 1)[2:] == (DESC_F_NEXT, 0)


def test_chain_longer_than_ring_chains_every_descriptor(fe: VirtioNetFrontend) -> None:
    BY_NAME["chain_longer_than_ring"].run(fe)
    q = fe.queues[TXQ]
    assert all(desc(q, i)[2:] == (DESC_F_NEXT, (i + 1) % q.size) for i in range(q.size))


def test_avail_idx_jump_claims_more_than_the_ring(fe: VirtioNetFrontend) -> None:
    BY_NAME["avail_idx_jumps_past_ring"].run(fe)
    q = fe.queues[TXQ]
    assert q.mem.u16[(q.avail_off + 2) // 2] > q.size


def test_indirect_nested_table_holds_an_indirect_entry(fe: VirtioNetFrontend) -> None:
    BY_NAME["indirect_nested"].run(fe)
    q = fe.queues[TXQ]
    addr, length, flags, _ = desc(q, 0)
    assert flags == DESC_F_INDIRECT and length == 16
    inner = DESC.unpack_from(q.mem.mm, addr - q.mem.gpa_base)
    assert inner[2] == DESC_F_INDIRECT


def test_bad_header_attacks_queue_well_formed_descriptors(fe: VirtioNetFrontend) -> None:
    BY_NAME["gso_hdr_len_beyond_frame"].run(fe)
    q = fe.queues[TXQ]
    addr, length, _, _ = desc(q, q.chains and next(iter(q.chains)) or 0)
    assert in_memory(fe, addr, length)
    hdr = NET_HDR.unpack_from(q.mem.mm, addr - q.mem.gpa_base)
    assert hdr[2] > length          # hdr_len beyond the frame
