"""One front end's vhost-user connection, as a state machine.

The session keeps what the front end told us (features, memory table,
each virtqueue's size, addresses, base index, eventfds, enable bit) and
answers its requests.  It never touches the data path: after every
message it asks its `Hooks` to reconcile, and the port
(vswitchd/ports/vhostuser.py) starts, restarts or stops the device in the
workers when `running_pairs()` or the state under them changed
(`version`).  GET_VRING_BASE and a new memory table stop the device first
(`Hooks.stop()` returns the rings' indices as the workers left them), as
the spec requires: "the back-end must stop the ring upon receiving
VHOST_USER_GET_VRING_BASE".

The session owns every fd it was sent and closes it when replaced or
when the connection ends (`close()`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vswitchd.vhost import features as F
from vswitchd.vhost.messages import (
    U64,
    VRING_IDX_MASK,
    VRING_NOFD,
    VRING_STATE,
    Message,
    ProtocolError,
    Req,
    encode_reply,
)

log = logging.getLogger(__name__)

MAX_VRINGS = 32


class Hooks(Protocol):
    def stop(self) -> dict[int, int]:
        """Stops the device if it runs; returns {vring: last_avail}."""

    def reconcile(self) -> None:
        """Starts, restarts or leaves the device after a message."""


@dataclass
class Vring:
    num: int = 0
    desc: int = 0
    used: int = 0
    avail: int = 0
    base: int = 0
    kick: int | None = None      # fd; None = not received (or stopped)
    call: int = -1               # fd; -1 = none
    enabled: bool = False
    addr_set: bool = False

    def ready(self) -> bool:
        return self.num > 0 and self.addr_set and self.kick is not None and self.enabled


@dataclass
class Region:
    guest_phys_addr: int
    size: int
    user_addr: int
    mmap_offset: int
    fd: int


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass
class Session:
    name: str
    max_pairs: int
    offered: int
    hooks: Hooks
    features: int = 0
    protocol_features: int = 0
    status: int = 0
    regions: list[Region] = field(default_factory=list)
    vrings: list[Vring] = field(default_factory=lambda: [Vring() for _ in range(MAX_VRINGS)])
    version: int = 0               # bumped by every change under the device
    messages: int = 0
    on_message: Callable[[Message], None] | None = None

    # What the port asks.

    def running_pairs(self) -> int:
        """Queue pairs the device can run: the leading pairs whose two
        virtqueues are both ready, at most max_pairs; 0 = not running."""
        if not self.regions:
            return 0
        n = 0
        while n < self.max_pairs and self.vrings[2 * n].ready() and self.vrings[2 * n + 1].ready():
            n += 1
        return n

    def has(self, bit: int) -> bool:
        return bool(self.features & F.bit(bit))

    def close(self) -> None:
        """The connection ended: forget everything, close every fd."""
        for r in self.regions:
            _close(r.fd)
        self.regions = []
        for v in self.vrings:
            _close(v.kick)
            _close(v.call)
        self.vrings = [Vring() for _ in range(MAX_VRINGS)]
        self.version += 1

    # Messages.

    def handle(self, msg: Message) -> bytes | None:
        """Applies `msg`; returns the reply to send, if any.  Raises
        ProtocolError for a message the connection cannot survive."""
        self.messages += 1
        try:
            req = Req(msg.request)
        except ValueError:
            req = None
        handler = _HANDLERS.get(req) if req is not None else None
        if handler is None:
            for fd in msg.fds:
                _close(fd)
            log.debug("%s: unsupported %s ignored", self.name, msg.name())
            return self._ack(msg, ok=False)
        reply = handler(self, msg)
        if reply is None:
            reply = self._ack(msg, ok=True)
        self.hooks.reconcile()
        return reply

    def _ack(self, msg: Message, ok: bool) -> bytes | None:
        if msg.need_reply and self.protocol_features & F.bit(F.PROTOCOL_F_REPLY_ACK):
            return encode_reply(msg.request, U64.pack(0 if ok else 1))
        return None

    def _vring(self, index: int) -> Vring:
        if not 0 <= index < 2 * self.max_pairs:
            raise ProtocolError(f"vring {index} out of range (0-{2 * self.max_pairs - 1})")
        return self.vrings[index]

    def _get_features(self, msg: Message) -> bytes:
        return encode_reply(msg.request, U64.pack(self.offered))

    def _set_features(self, msg: Message) -> None:
        value = msg.u64()
        if value & ~self.offered:
            raise ProtocolError(f"SET_FEATURES {value:#x}: bits we did not offer")
        if value != self.features:
            self.hooks.stop()
            self.features = value
            self.version += 1
        if not self.has(F.F_PROTOCOL_FEATURES):
            for v in self.vrings:   # without the protocol feature, rings start enabled
                v.enabled = True

    def _get_protocol_features(self, msg: Message) -> bytes:
        return encode_reply(msg.request, U64.pack(F.PROTOCOL_OFFERED))

    def _set_protocol_features(self, msg: Message) -> None:
        self.protocol_features = msg.u64() & F.PROTOCOL_OFFERED

    def _get_queue_num(self, msg: Message) -> bytes:
        return encode_reply(msg.request, U64.pack(self.max_pairs))

    def _nothing(self, msg: Message) -> None:
        for fd in msg.fds:
            _close(fd)

    def _reset(self, msg: Message) -> None:
        self._store_bases(self.hooks.stop())
        self.features = 0
        self.version += 1

    def _set_mem_table(self, msg: Message) -> None:
        regions = msg.mem_regions()
        if len(msg.fds) != len(regions):
            for fd in msg.fds:
                _close(fd)
            raise ProtocolError(f"SET_MEM_TABLE: {len(regions)} regions, {len(msg.fds)} fds")
        self._store_bases(self.hooks.stop())
        for r in self.regions:
            _close(r.fd)
        self.regions = [Region(g, s, u, o, fd)
                        for (g, s, u, o), fd in zip(regions, msg.fds, strict=True)]
        self.version += 1

    def _set_vring_num(self, msg: Message) -> None:
        index, num = msg.vring_state()
        if num == 0 or num > 32768 or num & (num - 1):
            raise ProtocolError(f"SET_VRING_NUM {index}: {num} is not a power of two <= 32768")
        self._vring(index).num = num
        self.version += 1

    def _set_vring_addr(self, msg: Message) -> None:
        index, _flags, desc, used, avail = msg.vring_addr()
        v = self._vring(index)
        v.desc, v.used, v.avail, v.addr_set = desc, used, avail, True
        self.version += 1

    def _set_vring_base(self, msg: Message) -> None:
        index, num = msg.vring_state()
        self._vring(index).base = num & 0xFFFF
        self.version += 1

    def _get_vring_base(self, msg: Message) -> bytes:
        index, _ = msg.vring_state()
        v = self._vring(index)
        self._store_bases(self.hooks.stop())
        _close(v.kick)
        v.kick = None           # stopped until the next SET_VRING_KICK
        self.version += 1
        return encode_reply(msg.request, VRING_STATE.pack(index, v.base))

    def _store_bases(self, bases: dict[int, int]) -> None:
        for index, base in bases.items():
            self.vrings[index].base = base

    def _vring_fd(self, msg: Message) -> tuple[Vring, int | None]:
        value = msg.u64()
        v = self._vring(value & VRING_IDX_MASK)
        fd = None if value & VRING_NOFD or not msg.fds else msg.fds[0]
        for extra in msg.fds[1:] if fd is not None else msg.fds:
            _close(extra)
        return v, fd

    def _set_vring_kick(self, msg: Message) -> None:
        v, fd = self._vring_fd(msg)
        if fd is None:
            raise ProtocolError("SET_VRING_KICK without an eventfd: polling mode "
                                "is not supported")
        self._store_bases(self.hooks.stop())
        _close(v.kick)
        v.kick = fd
        if not self.has(F.F_PROTOCOL_FEATURES):
            v.enabled = True
        self.version += 1

    def _set_vring_call(self, msg: Message) -> None:
        v, fd = self._vring_fd(msg)
        self._store_bases(self.hooks.stop())
        _close(v.call)
        v.call = -1 if fd is None else fd
        self.version += 1

    def _set_vring_enable(self, msg: Message) -> None:
        index, enable = msg.vring_state()
        v = self._vring(index)
        if v.enabled != bool(enable):
            self._store_bases(self.hooks.stop())
            v.enabled = bool(enable)
            self.version += 1

    def _set_status(self, msg: Message) -> None:
        self.status = msg.u64() & 0xFF
        if self.status == 0:
            self._store_bases(self.hooks.stop())

    def _get_status(self, msg: Message) -> bytes:
        return encode_reply(msg.request, U64.pack(self.status))


_HANDLERS: dict[Req, Callable[[Session, Message], bytes | None]] = {
    Req.GET_FEATURES: Session._get_features,
    Req.SET_FEATURES: Session._set_features,
    Req.SET_OWNER: Session._nothing,
    Req.RESET_OWNER: Session._reset,
    Req.SET_MEM_TABLE: Session._set_mem_table,
    Req.SET_VRING_NUM: Session._set_vring_num,
    Req.SET_VRING_ADDR: Session._set_vring_addr,
    Req.SET_VRING_BASE: Session._set_vring_base,
    Req.GET_VRING_BASE: Session._get_vring_base,
    Req.SET_VRING_KICK: Session._set_vring_kick,
    Req.SET_VRING_CALL: Session._set_vring_call,
    Req.SET_VRING_ERR: Session._nothing,
    Req.GET_PROTOCOL_FEATURES: Session._get_protocol_features,
    Req.SET_PROTOCOL_FEATURES: Session._set_protocol_features,
    Req.GET_QUEUE_NUM: Session._get_queue_num,
    Req.SET_VRING_ENABLE: Session._set_vring_enable,
    Req.SET_STATUS: Session._set_status,
    Req.GET_STATUS: Session._get_status,
}
