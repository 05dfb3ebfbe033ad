"""The ``vswitchd`` program: load the config, run the switch, serve management.

Lifecycle (``Daemon.run``): start the switch (workers, then ports), then the
metrics exporter, then the management socket, then tell the service manager
READY=1.  SIGTERM/SIGINT and SIGHUP handlers only queue work on the event
loop: stop, or reload.  Shutdown mirrors start-up: STOPPING=1, management
socket, exporter, then the switch (ports detached, TAPs it created removed,
workers joined).

The management socket is the last thing up and the first down because a
``vswitchctl reload`` may move the exporter: closing the socket cancels a
reload in progress, so none can bind a metrics listener after the exporter
has stopped (its scrapes would read a freed switch).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from vswitchd import __version__, attach, commands, config, fdstore, sdnotify
from vswitchd.attach_rules import RuleWatcher
from vswitchd.control import ControlServer
from vswitchd.errors import VswitchError
from vswitchd.exporter import MetricsServer, serving_change
from vswitchd.switch import VSwitch

log = logging.getLogger("vswitchd")

DEFAULT_CONFIG = "/etc/vswitchd/vswitchd.toml"


class Daemon:
    def __init__(self, config_path: str, cfg: config.Config) -> None:
        self.config_path = config_path
        self.switch = VSwitch(cfg, inherited=fdstore.inherited())
        m = cfg.management
        self.control = ControlServer(m.socket, mode=m.socket_mode, group=m.socket_group)
        commands.register(self.control, self.switch, self.reload)
        # VMs that attach themselves: rules, the libvirt hook, qemu-ifup.
        self.attachments = attach.Attachments(self.switch, attach.state_path(m.socket))
        attach.register(self.control, self.attachments)
        self.rules = RuleWatcher(self.attachments)
        # [evpn]: BGP EVPN through GoBGP for the vxlan port (vswitchd/evpn.py).
        self.evpn: Any = None
        if cfg.evpn is not None:
            from vswitchd.evpn import Evpn  # grpc and the stubs only with [evpn]
            self.evpn = Evpn(cfg.evpn, self.switch)
        self.switch.evpn = self.evpn        # for the exporter (vswitchd/metrics.py)
        self.control.register("evpn/show", lambda a: self.evpn.show() if self.evpn else
                              {"enabled": False}, "",
                              "Show BGP EVPN sessions and the routes sent and received")
        # Always there, serving or not: a reload may enable a disabled exporter.
        self.metrics = MetricsServer(self.switch, cfg.metrics.listen)
        self._stop = asyncio.Event()
        # Two reloads at once (SIGHUP and vswitchctl) would both bind the new
        # metrics address, and the second would fail on the first's listener.
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[object]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.switch.start()
        try:
            await self.attachments.restore()
            await self.rules.start()
            if self.evpn is not None:
                await self.evpn.start()
            if self.switch.config.metrics.enabled:
                await self.metrics.start()
            try:
                await self.control.start()
            except BaseException:
                await self.metrics.stop()
                raise
        except BaseException:
            if self.evpn is not None:
                await self.evpn.stop()
            await self.rules.stop()
            await self.switch.stop()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        watchdog = sdnotify.watchdog_interval_s()
        if watchdog:
            self._spawn(self._watchdog(watchdog), "vswitchd-watchdog")
        sdnotify.notify("READY=1", f"STATUS=forwarding on {len(self.switch.ports)} ports")
        log.info("vswitchd %s ready: config %s, management %s", __version__,
                 self.config_path, self.switch.config.management.socket)
        try:
            await self._stop.wait()
        finally:
            sdnotify.notify("STOPPING=1")
            log.info("shutting down")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.control.stop()       # first: see the module docstring
            await self.metrics.stop()       # before the switch: scrapes read its counters
            if self.evpn is not None:
                await self.evpn.stop()      # withdraws what it advertised
            await self.rules.stop()
            await self.switch.stop()

    def _on_sighup(self) -> None:
        self._spawn(self._reload_quietly(), "vswitchd-reload")

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except VswitchError:
            pass    # logged by reload(); the running config stays

    def _spawn(self, coro, name: str) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> str:
        """Re-reads the config file and applies the difference; a bad file
        is refused, logged and returned, and the running config stays."""
        async with self._reload_lock:
            sdnotify.notify("RELOADING=1")
            was = self.metrics.serving_on
            try:
                new = config.load(self.config_path)
                # A new metrics address is bound before the switch changes,
                # and the old one let go only once the switch has taken the
                # new config: a bad address or a bad port leaves both as
                # they were.
                # Runtime ports (vswitchd/attach.py) are not in the file: keep them.
                async with self.attachments.lock:
                    new = self.attachments.for_reload(new)
                    async with self.metrics.change_listen(new.metrics.listen):
                        diff = await self.switch.apply(new)
                    self.attachments.reloaded()
            except VswitchError as exc:
                log.error("reload refused: %s", exc)
                raise
            finally:
                sdnotify.notify("READY=1")
            now = self.metrics.serving_on
        # Changed rules re-make their ports; a port gone from the file may
        # leave an interface a rule now matches.
        await self.rules.rules_changed(diff.attach_changed)
        msg = (f"reloaded {self.config_path}: {len(diff.added)} added, "
               f"{len(diff.removed)} removed, {len(diff.changed)} changed")
        if now != was:
            msg += f"; metrics {serving_change(was, now)}"
        if diff.awaiting_restart:
            msg += f"; {', '.join(diff.awaiting_restart)} take effect at the next restart"
        log.info("%s", msg)
        return msg

    async def _watchdog(self, interval_s: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vswitchd", description="Userspace virtual switch daemon")
    ap.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                    help=f"configuration file (default {DEFAULT_CONFIG})")
    ap.add_argument("--check", action="store_true",
                    help="only validate the configuration and exit")
    ap.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"], help="default info")
    ap.add_argument("--version", action="version", version=f"vswitchd {__version__}")
    return ap.parse_args(argv)


def _setup_logging(level: str) -> None:
    # Under systemd, journald stamps every line: don't print a second time.
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journal else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    _setup_logging(args.log_level)
    try:
        cfg = config.load(args.config)
    except VswitchError as exc:
        print(f"vswitchd: {exc}", file=sys.stderr)
        return 1
    if args.check:
        print(f"{args.config}: OK ({len(cfg.ports)} ports)")
        return 0
    try:
        import uvloop
        uvloop.run(Daemon(args.config, cfg).run())
    except VswitchError as exc:
        log.error("%s", exc)
        print(f"vswitchd: {exc}", file=sys.stderr) if sys.stderr.isatty() else None
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
