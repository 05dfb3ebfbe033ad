"""A private Open vSwitch instance (userspace datapath) for the comparison rows.

We never touch the system's Open vSwitch: the database, sockets, pidfiles and
logs all live in our own directory (OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point
there, so the `<bridge>.mgmt` sockets ovs-vswitchd creates land there too).
ovsdb-server and ovs-vswitchd run in the foreground as our children, so the
PID we signal is the one we started (and the one in their --pidfile).

`userspace-tso-enable` is read once when ovs-vswitchd starts, so it is set in
the database before ovs-vswitchd runs and each configuration gets a fresh
instance.  Without it OVS's AF_PACKET ("system") ports forward frames with
partial checksums as they are (the trap described in shared/FACTS.md), so the
veth row is only measured with TSO on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from proc import BenchError, Managed, in_netns, run, wait_until
from topology import link_exists

SCHEMA_CANDIDATES = ("/usr/share/openvswitch/vswitch.ovsschema",)


def available() -> bool:
    return all(shutil.which(t) for t in ("ovs-vswitchd", "ovsdb-server", "ovsdb-tool",
                                          "ovs-vsctl", "ovs-appctl"))


class OvsInstance:
    """ovsdb-server + ovs-vswitchd under `workdir`; start()/stop() are symmetric."""

    def __init__(self, workdir: Path, userspace_tso: bool, netns: str | None = None) -> None:
        self.dir = workdir
        # Run the daemons inside `netns` (a "host" of the VXLAN rows): the
        # internal ports (TAPs) they create and the routes they read are
        # that namespace's.
        self.netns = netns
        self.userspace_tso = userspace_tso
        self.db = workdir / "conf.db"
        self.db_sock = workdir / "db.sock"
        self.env = dict(os.environ, OVS_RUNDIR=str(workdir), OVS_DBDIR=str(workdir),
                        OVS_LOGDIR=str(workdir), OVS_SYSCONFDIR=str(workdir))
        self.ovsdb: Managed | None = None
        self.vswitchd: Managed | None = None
        self.bridges: list[str] = []

    @property
    def pid(self) -> int:
        assert self.vswitchd is not None
        return self.vswitchd.pid

    def start(self) -> None:
        schema = next((s for s in SCHEMA_CANDIDATES if Path(s).exists()), None)
        if schema is None:
            raise BenchError("Open vSwitch schema not found (is openvswitch-switch installed?)")
        self.dir.mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", str(self.db), schema], 20, env=self.env)
        self.ovsdb = Managed("ovsdb-server", [
            *self._prefix(), "ovsdb-server", str(self.db), f"--remote=punix:{self.db_sock}",
            f"--pidfile={self.dir / 'ovsdb-server.pid'}",
            f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.dir / 'ovsdb-server.log'}", "-vconsole:off",
        ], log_path=self.dir / "ovsdb-server.out", env=self.env)
        wait_until(self.db_sock.exists, 10, what="ovsdb-server socket")
        self.vsctl("--no-wait", "init")
        if self.userspace_tso:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       "other_config:userspace-tso-enable=true")
        ctl = self.dir / "ovs-vswitchd.ctl"
        self.vswitchd = Managed("ovs-vswitchd", [
            *self._prefix(), "ovs-vswitchd", f"unix:{self.db_sock}",
            f"--pidfile={self.dir / 'ovs-vswitchd.pid'}", f"--unixctl={ctl}",
            f"--log-file={self.dir / 'ovs-vswitchd.log'}", "-vconsole:off",
        ], log_path=self.dir / "ovs-vswitchd.out", env=self.env)
        wait_until(lambda: ctl.exists() or not self.vswitchd_alive(), 15,
                   what="ovs-vswitchd control socket")
        if not self.vswitchd_alive():
            raise BenchError("ovs-vswitchd exited at start-up:\n" + self._tail())
        self._check_pidfile()

    def _prefix(self) -> list[str]:
        # `ip netns exec` execs the program: the PID we hold is the daemon's.
        return in_netns(self.netns) if self.netns else []

    def vswitchd_alive(self) -> bool:
        return self.vswitchd is not None and self.vswitchd.alive()

    def _check_pidfile(self) -> None:
        pidfile = self.dir / "ovs-vswitchd.pid"
        wait_until(pidfile.exists, 5, what="ovs-vswitchd pidfile")
        pid = int(pidfile.read_text().strip())
        if pid != self.pid:
            raise BenchError(f"ovs-vswitchd pidfile says {pid}, we started {self.pid}")

    def _tail(self) -> str:
        log = self.dir / "ovs-vswitchd.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-15:]) \
            if log.exists() else ""

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=20", *args], 30,
                   env=self.env).stdout

    def add_bridge(self, name: str) -> None:
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
        self.bridges.append(name)

    def add_tap_port(self, bridge: str, ifname: str) -> None:
        """A `type=tap` port: OVS creates the TAP in our namespace."""
        self.vsctl("add-port", bridge, ifname, "--", "set", "interface", ifname, "type=tap")
        wait_until(lambda: link_exists(ifname, self.netns), 10, what=f"OVS tap {ifname}")

    def appctl(self, *args: str) -> str:
        ctl = self.dir / "ovs-vswitchd.ctl"
        return run(["ovs-appctl", "-t", str(ctl), *args], 20, env=self.env).stdout

    def ofport(self, ifname: str) -> int:
        """The OpenFlow port number OVS gave interface `ifname`."""
        port = int(self.vsctl("get", "Interface", ifname, "ofport").strip())
        if port <= 0:
            raise BenchError(f"OVS gave {ifname} no OpenFlow port ({port})")
        return port

    def replace_flows(self, bridge: str, flows: str) -> int:
        """Replace `bridge`'s flow table (NORMAL) with `flows` (ovs-ofctl
        add-flows text); returns how many flows the bridge then holds."""
        path = self.dir / f"{bridge}.flows"
        path.write_text(flows)
        run(["ovs-ofctl", "del-flows", bridge], 30, env=self.env)
        run(["ovs-ofctl", "add-flows", bridge, str(path)], 60, env=self.env)
        out = run(["ovs-ofctl", "dump-aggregate", bridge], 30, env=self.env).stdout
        return int(out.rsplit("flow_count=", 1)[1].split()[0])

    def add_system_port(self, bridge: str, ifname: str) -> None:
        """An existing interface (veth end), used through AF_PACKET."""
        self.vsctl("add-port", bridge, ifname)

    def stop(self) -> None:
        """Remove our bridges (OVS deletes its TAPs), then stop both daemons by PID."""
        if self.vswitchd_alive():
            for br in reversed(self.bridges):
                try:
                    self.vsctl("--if-exists", "del-br", br)
                except BenchError as e:
                    print(f"bench: ovs del-br {br}: {e}")
        self.bridges.clear()
        if self.vswitchd is not None:
            self.vswitchd.stop()
            self.vswitchd = None
        if self.ovsdb is not None:
            self.ovsdb.stop()
            self.ovsdb = None
