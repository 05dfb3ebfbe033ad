"""The Prometheus exporter's HTTP side: where ``/metrics`` is served, and
moving it on a reload.

``MetricsServer`` owns the listener(s) and registers a
``vswitchd.metrics.SwitchCollector`` (what a scrape reads) on its registry
while it serves.

Lifetime.  A scrape must not touch the C switch once it is freed, so
``MetricsServer.stop()`` must run before ``VSwitch.stop()``: it stops the
HTTP server, then closes the collector, which waits for a scrape in progress
to finish reading; a later one (a request accepted just before) gets only
``vswitchd_info``.  Concurrent scrapes take turns on the collector's lock.

Moving.  A reload that changes ``[metrics] listen`` binds the new address
beside the old one, and closes the old one only once the rest of the reload
has succeeded (``MetricsServer.change_listen``): a bad address, or a bad
port elsewhere in the file, leaves the exporter where it was.  The collector
stays registered across a move, so both listeners serve the same counters.
Only the same port on an overlapping address (127.0.0.1:9477 ->
0.0.0.0:9477), which the kernel will not let two sockets listen on, is
handed over instead: old closed, new bound, old bound again on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from vswitchd.config import MetricsConfig
from vswitchd.errors import VswitchError
from vswitchd.metrics import SwitchCollector, SwitchLike

log = logging.getLogger(__name__)


def serving_change(was: str, now: str) -> str:
    """How the log and the reload reply say the exporter moved from ``was``
    to ``now`` ("" for not serving)."""
    if not now:
        return f"disabled (was serving on {was})"
    return f"now serving on {now} (was {was or 'disabled'})"


def _address(listen: str) -> tuple[str, int]:
    try:
        mc = MetricsConfig(listen)
        host, port = mc.host, mc.port
    except ValueError:
        raise VswitchError(f"metrics.listen: {listen!r} is not a valid listen "
                           "address (host:port or [ipv6]:port)") from None
    if host is None or port is None:
        raise VswitchError("metrics.listen: empty, the exporter is disabled")
    return host, port


class _BindError(VswitchError):
    """A listen address the kernel refused; ``errno`` says why."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_


class _Listener:
    """One bound HTTP server serving a registry, and the thread it runs in."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = _address(listen)
        try:
            # Binds here (immediate), serves from the server's own thread.
            self.server, self.thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise _BindError(f"metrics.listen: cannot listen on {listen}: "
                             f"{exc.strerror or exc}", exc.errno) from None
        self.listen = listen

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    async def close(self) -> None:
        # shutdown() waits for serve_forever's next poll (up to 0.5 s), so
        # not on the event loop thread.  All three steps in that thread: if
        # the awaiting task is cancelled (the management socket closing
        # under a reload), the socket is still closed and the thread joined.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class MetricsServer:
    """Serves ``/metrics`` for ``switch`` on ``listen`` ("host:port" or
    "[ipv6]:port", as in ``[metrics] listen``).

    ``registry`` is for tests: the switch's collector is registered on it
    while serving.  Without one the server makes its own (never the
    process-wide default) with the process, platform and GC collectors too.
    Stop it before the switch: see the module docstring.

    ``change_listen()`` moves a running exporter (a reload): several
    listeners may briefly serve the same registry and collector, so a move
    never leaves a moment with nothing listening.
    """

    def __init__(self, switch: SwitchLike, listen: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.switch = switch
        self.listen = listen
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.collector: SwitchCollector | None = None
        self._listener: _Listener | None = None

    @property
    def port(self) -> int | None:
        """The TCP port being served, or None when stopped."""
        return None if self._listener is None else self._listener.port

    @property
    def serving_on(self) -> str:
        """The listen address being served, or "" when stopped."""
        return "" if self._listener is None else self._listener.listen

    async def start(self) -> None:
        self._listener = self._bind(self.listen)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await self._close(listener, last=True)

    @contextlib.asynccontextmanager
    async def change_listen(self, listen: str) -> AsyncIterator[None]:
        """Moves the exporter to ``listen`` ("" stops it) as one part of a
        bigger change, a reload, that may still fail in the ``async with``
        body.

        Entering binds ``listen`` beside the listener serving now, so a bad
        address raises VswitchError, naming ``metrics.listen``, before
        anything has changed.  If the body raises, the new listener is
        closed and the old one has never stopped serving.  If it returns,
        the old listener is closed and the exporter serves on ``listen``.
        """
        was = self.serving_on
        if listen == was:
            self.listen = listen
            yield
            return
        old = self._listener
        handed_over = False
        try:
            new = self._bind(listen) if listen else None
        except _BindError as exc:
            if not (old is not None and exc.errno == errno.EADDRINUSE
                    and _address(listen)[1] == old.port):
                raise
            # The same port on an overlapping address (127.0.0.1:9477 ->
            # 0.0.0.0:9477): the kernel lets only one of them listen, so the
            # port is handed over, and handed back if anything fails.
            new = await self._hand_over(old, listen)
            handed_over = True
        try:
            yield
        except BaseException:
            if new is not None:
                await self._close(new, last=old is None)
            if handed_over:
                assert old is not None
                self._listener = self._bind_back(old.listen)
            raise
        self._listener, self.listen = new, listen
        if old is not None and not handed_over:
            await self._close(old, last=new is None)
        log.info("metrics: %s", serving_change(was, listen))

    async def _hand_over(self, old: _Listener, listen: str) -> _Listener:
        """Closes ``old`` and binds ``listen`` on its port; if that fails,
        binds ``old``'s address again and raises.  Scrapes are refused for
        the moment in between."""
        self._listener = None
        await old.close()
        try:
            return self._bind(listen)
        except VswitchError:
            self._listener = self._bind_back(old.listen)
            raise

    def _bind_back(self, listen: str) -> _Listener | None:
        """Binds ``listen`` again after a failed hand-over; None (and an
        error in the log) if even that fails, e.g. another process took
        the port in between."""
        try:
            return self._bind(listen)
        except VswitchError as exc:
            log.error("metrics: could not return to %s: %s; exporter stopped", listen, exc)
            self._drop_collector()
            return None

    def _bind(self, listen: str) -> _Listener:
        """A listener on ``listen``; the first one registers the collector,
        so the registry never serves without it."""
        first = self.collector is None
        if first:
            self.collector = SwitchCollector(self.switch)
            self.registry.register(self.collector)
        try:
            return _Listener(listen, self.registry)
        except VswitchError:
            if first:
                self._drop_collector()
            raise

    async def _close(self, listener: _Listener, last: bool) -> None:
        await listener.close()
        if last:
            self._drop_collector()

    def _drop_collector(self) -> None:
        collector, self.collector = self.collector, None
        if collector is None:
            return
        # A request accepted before its listener closed may still be running
        # in its own thread: let it finish reading, and make any later read
        # a no-op.
        collector.close()
        self.registry.unregister(collector)
