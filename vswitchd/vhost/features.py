"""Feature bits of virtio-net and vhost-user that the backend offers."""

from __future__ import annotations

# virtio-net device features (virtio 1.2, 5.1.3) and transport features.
NET_F_CSUM = 0
NET_F_GUEST_CSUM = 1
NET_F_GUEST_TSO4 = 7
NET_F_GUEST_TSO6 = 8
NET_F_HOST_TSO4 = 11
NET_F_HOST_TSO6 = 12
NET_F_MRG_RXBUF = 15
NET_F_MQ = 22
F_ANY_LAYOUT = 27
RING_F_INDIRECT_DESC = 28
RING_F_EVENT_IDX = 29
F_PROTOCOL_FEATURES = 30      # VHOST_USER_F_PROTOCOL_FEATURES
F_VERSION_1 = 32
F_IN_ORDER = 35

# vhost-user protocol features.
PROTOCOL_F_MQ = 0
PROTOCOL_F_REPLY_ACK = 3
PROTOCOL_F_STATUS = 16

NAMES = {
    NET_F_CSUM: "csum", NET_F_GUEST_CSUM: "guest_csum", NET_F_GUEST_TSO4: "guest_tso4",
    NET_F_GUEST_TSO6: "guest_tso6", NET_F_HOST_TSO4: "host_tso4", NET_F_HOST_TSO6: "host_tso6",
    NET_F_MRG_RXBUF: "mrg_rxbuf", NET_F_MQ: "mq", F_ANY_LAYOUT: "any_layout",
    RING_F_INDIRECT_DESC: "indirect_desc", RING_F_EVENT_IDX: "event_idx",
    F_PROTOCOL_FEATURES: "protocol_features", F_VERSION_1: "version_1", F_IN_ORDER: "in_order",
}
PROTOCOL_NAMES = {PROTOCOL_F_MQ: "mq", PROTOCOL_F_REPLY_ACK: "reply_ack",
                  PROTOCOL_F_STATUS: "status"}


def bit(n: int) -> int:
    return 1 << n


def offered(csum: bool, tso: bool) -> int:
    """What we offer a front end, given the port's `offload` setting.  The
    rings do in-order use by construction (chains are returned in the
    order they were made available), so IN_ORDER costs nothing."""
    f = (bit(F_VERSION_1) | bit(NET_F_MRG_RXBUF) | bit(RING_F_EVENT_IDX)
         | bit(RING_F_INDIRECT_DESC) | bit(F_ANY_LAYOUT) | bit(F_IN_ORDER) | bit(NET_F_MQ)
         | bit(F_PROTOCOL_FEATURES))
    if csum:
        f |= bit(NET_F_CSUM) | bit(NET_F_GUEST_CSUM)
        if tso:
            f |= (bit(NET_F_HOST_TSO4) | bit(NET_F_HOST_TSO6) | bit(NET_F_GUEST_TSO4)
                  | bit(NET_F_GUEST_TSO6))
    return f


PROTOCOL_OFFERED = bit(PROTOCOL_F_MQ) | bit(PROTOCOL_F_REPLY_ACK) | bit(PROTOCOL_F_STATUS)


def names(value: int, table: dict[int, str] = NAMES) -> list[str]:
    return [name for b, name in sorted(table.items()) if value & bit(b)]
