"""Named network namespaces (`ip netns` style, bind-mounted at /run/netns/NAME).

`in_netns(name)` moves only the *calling thread* into the namespace (setns
acts per thread) and always moves it back.  Sockets and /dev/net/tun files
opened inside keep that namespace for life, which is how we talk to a
namespace without forking: open the fd inside, use it anywhere.  Never await
inside `in_netns`: another coroutine would run in the wrong namespace.

We use ctypes `setns` rather than pyroute2's netns helpers: pyroute2 0.9
creates namespace sockets in a forked child and, by default (O_CREAT),
creates a namespace that does not exist -- we want a missing namespace to be
an error, not a silently created empty one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
# The thread's own namespace: /proc/self/ns/net would be the main thread's.
_THREAD_NETNS = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> str:
    """Path of the bind mount of namespace `name`; rejects path tricks."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name: str) -> bool:
    """True if `name` is a live named namespace (a mounted nsfs file).

    A failed `ip netns add` can leave a plain empty file behind; ismount()
    tells it from a real namespace because nsfs lives on its own device.
    """
    return os.path.ismount(netns_path(name))


def netns_id(name: str) -> int | None:
    """Inode of namespace `name` (tells a re-created namespace from the old one)."""
    if not netns_exists(name):
        return None
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread in namespace `name` (None: stay put)."""
    if name is None:
        yield
        return
    target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        _setns(target)
        try:
            yield
        finally:
            # Failing to return home would leave the daemon's loop thread in a
            # container's namespace: nothing sane can continue after that.
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextmanager
def netns_fd(name: str) -> Iterator[int]:
    """An fd of namespace `name` for IFLA_NET_NS_FD, closed after the block."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
