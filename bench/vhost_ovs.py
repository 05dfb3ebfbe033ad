"""Open vSwitch-DPDK with two dpdkvhostuserclient ports, for the vhost-user rows.

Debian's `openvswitch-switch-dpdk` installs a second ovs-vswitchd build
under /usr/lib/openvswitch-switch-dpdk/ and offers it through the
`ovs-vswitchd` alternative.  We run that binary by its path instead of
switching the alternative, so the machine's `ovs-vswitchd` (which the other
ovs-* rows and any other user run) stays the one it was.  Database,
sockets and logs are private to the row (bench/ovs.py's OvsInstance).

DPDK runs without hugepages (`dpdk-extra = --no-huge -m 1024`), under a file
prefix of its own.  `--legacy-mem` is there because OVS adds `--in-memory`
unless the extra arguments already choose a memory mode, and DPDK refuses
`--in-memory` together with `--no-huge` (which implies legacy memory).
`per-port-memory` sizes each port's mbuf pool from its queues (~16k mbufs)
instead of the shared 262144 that does not fit in 1 GB.  The PMD thread and
the DPDK lcore are pinned to the switch's CPU, and the whole process is
started under `taskset` so its other threads stay there too.
"""

from __future__ import annotations

from pathlib import Path

from ovs import SCHEMA_CANDIDATES, OvsInstance
from proc import BenchError, Managed, run, wait_until

BINARY = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
PACKAGE = "openvswitch-switch-dpdk"


def available() -> bool:
    return BINARY.exists()


class OvsDpdkInstance(OvsInstance):
    """ovsdb-server + the DPDK build of ovs-vswitchd, one netdev bridge."""

    def __init__(self, workdir: Path, cpu: int, prefix: str) -> None:
        super().__init__(workdir, userspace_tso=False)
        self.cpu = cpu
        self.prefix = prefix

    def start(self) -> None:
        schema = next((s for s in SCHEMA_CANDIDATES if Path(s).exists()), None)
        if schema is None:
            raise BenchError("Open vSwitch schema not found (is openvswitch-common installed?)")
        self.dir.mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", str(self.db), schema], 20, env=self.env)
        self.ovsdb = Managed("ovsdb-server", [
            "ovsdb-server", str(self.db), f"--remote=punix:{self.db_sock}",
            f"--pidfile={self.dir / 'ovsdb-server.pid'}",
            f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.dir / 'ovsdb-server.log'}", "-vconsole:off",
        ], log_path=self.dir / "ovsdb-server.out", env=self.env)
        wait_until(self.db_sock.exists, 10, what="ovsdb-server socket")
        self.vsctl("--no-wait", "init")
        mask = f"{1 << self.cpu:#x}"
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                   "other_config:dpdk-init=true",
                   f'other_config:dpdk-extra="--no-huge -m 1024 --legacy-mem --no-pci '
                   f'--file-prefix {self.prefix}"',
                   f"other_config:dpdk-lcore-mask={mask}",
                   f"other_config:pmd-cpu-mask={mask}",
                   # The shared default asks for 262144 mbufs (~800 MB) per MTU;
                   # per port it is ~16k, which fits the 1 GB of non-huge memory.
                   "other_config:per-port-memory=true")
        ctl = self.dir / "ovs-vswitchd.ctl"
        self.vswitchd = Managed("ovs-vswitchd-dpdk", [
            "taskset", "-c", str(self.cpu), str(BINARY), f"unix:{self.db_sock}",
            f"--pidfile={self.dir / 'ovs-vswitchd.pid'}", f"--unixctl={ctl}",
            f"--log-file={self.dir / 'ovs-vswitchd.log'}", "-vconsole:off",
        ], log_path=self.dir / "ovs-vswitchd.out", env=self.env)
        wait_until(lambda: ctl.exists() or not self.vswitchd_alive(), 60,
                   what="ovs-vswitchd-dpdk control socket")
        if not self.vswitchd_alive():
            raise BenchError("ovs-vswitchd-dpdk exited at start-up: " + self.why_not())
        self._check_pidfile()
        try:
            wait_until(lambda: not self.vswitchd_alive() or self.vsctl(
                "get", "Open_vSwitch", ".", "dpdk_initialized").strip() == "true", 60,
                interval_s=0.5, what="dpdk_initialized")
        except BenchError:
            raise BenchError("DPDK did not initialize in ovs-vswitchd: "
                             + self.why_not()) from None
        if not self.vswitchd_alive():
            raise BenchError("ovs-vswitchd-dpdk exited while initializing DPDK: "
                             + self.why_not())

    def why_not(self) -> str:
        """The log lines that say why DPDK or a port failed, on one line."""
        log = self.dir / "ovs-vswitchd.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        bad = [ln.split("|", 4)[-1] for ln in lines if "|ERR|" in ln or "|EMER|" in ln]
        return "; ".join(bad[-3:]) or self._tail().replace("\n", " | ")[-400:]

    def add_vhost_client_port(self, bridge: str, name: str, socket: Path) -> None:
        """A dpdkvhostuserclient port: OVS connects to `socket`, served by the peer."""
        self.vsctl("add-port", bridge, name, "--", "set", "Interface", name,
                   "type=dpdkvhostuserclient", f"options:vhost-server-path={socket}")

    def port_error(self, name: str) -> str:
        return self.vsctl("get", "Interface", name, "error").strip().strip('"')
