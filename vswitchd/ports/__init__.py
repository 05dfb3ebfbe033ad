"""Port backends: how the switch reaches an interface.

`TapPort` creates/adopts a TAP (one fd per queue); `NetdevPort` attaches to an
existing interface with AF_PACKET sockets; both return a `PortIO` for the
fast path.  `LinkMonitor` follows (admin up and carrier) over rtnetlink.
"""

from vswitchd.ports.base import LINK_TRANSITIONS, LinkInfo, LinkState, PortIO
from vswitchd.ports.linkmon import LinkMonitor
from vswitchd.ports.netdev import NetdevPort
from vswitchd.ports.netns import in_netns, netns_exists, netns_path
from vswitchd.ports.tap import TapPort
from vswitchd.ports.vhostuser import VhostUserPort
from vswitchd.ports.vxlan import VxlanPort

__all__ = [
    "LINK_TRANSITIONS",
    "LinkInfo",
    "LinkMonitor",
    "LinkState",
    "NetdevPort",
    "PortIO",
    "TapPort",
    "VhostUserPort",
    "VxlanPort",
    "in_netns",
    "netns_exists",
    "netns_path",
]
