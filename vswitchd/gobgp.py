"""The one module that talks to GoBGP (gobgpd's gRPC API).

The rest of the daemon sees typed Python objects: `MacRoute` (EVPN type 2,
RFC 7432 section 7.2), `ImetRoute` (type 3, inclusive multicast with PMSI
ingress replication) and `Session`; never protobufs.  The generated stubs
(vswitchd/_gobgp/, made by `python -m vswitchd.gobgp_build` at build time
from Debian's .proto files) stay behind this module.

VXLAN encoding (RFC 8365): the VNI is the MPLS label field of the route
(type 2) and of the PMSI tunnel attribute (type 3, tunnel type 6, ingress
replication), the encapsulation extended community says VXLAN (8), and
route targets are two-octet-AS extended communities "ASN:VNI" by default,
what FRR derives.  Route distinguishers are "router-id:N" or "ASN:N".

Calls are blocking (grpc's sync API): the event loop runs them in an
executor.  Paths added through the API outlive the client: keep their
uuids (`MacRoute.uuid`) to withdraw them, or reconcile with `list_evpn()`.
"""

from __future__ import annotations

import ipaddress
import pathlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

_STUBS = pathlib.Path(__file__).resolve().parent / "_gobgp"
if str(_STUBS) not in sys.path:
    sys.path.insert(0, str(_STUBS))     # the stubs import each other flatly

import attribute_pb2 as attrs  # noqa: E402
import gobgp_pb2 as api  # noqa: E402
import gobgp_pb2_grpc as api_grpc  # noqa: E402
from google.protobuf.any_pb2 import Any as PbAny  # noqa: E402

from vswitchd.errors import VswitchError  # noqa: E402

EVPN = api.Family(afi=api.Family.AFI_L2VPN, safi=api.Family.SAFI_EVPN)
TUNNEL_VXLAN = 8                # BGP tunnel encapsulation type (RFC 9012)
PMSI_INGRESS_REPLICATION = 6
RT_SUBTYPE = 0x02               # route target
TIMEOUT_S = 5.0
_NIL = "<nil>"                  # what gobgpd says for "none" in strings


class GobgpError(VswitchError):
    """gobgpd refused a request or could not be reached."""


@dataclass(frozen=True)
class MacRoute:
    """EVPN type 2: `mac` in `vni` is behind VTEP `nexthop`."""

    vni: int
    mac: str
    nexthop: str
    rd: str
    route_targets: tuple[str, ...] = ()
    seq: int = 0                # MAC mobility sequence number
    ip: str | None = None
    neighbor: str | None = None  # who sent it; None: our own
    uuid: bytes = b""           # AddPath's answer; ListPath leaves it empty


@dataclass(frozen=True)
class ImetRoute:
    """EVPN type 3: VTEP `originator` wants `vni`'s BUM traffic."""

    vni: int
    originator: str
    nexthop: str
    rd: str
    route_targets: tuple[str, ...] = ()
    neighbor: str | None = None
    uuid: bytes = b""


@dataclass(frozen=True)
class Session:
    neighbor: str
    state: str                  # "established", "active", ...
    received: int = 0
    accepted: int = 0

    @property
    def up(self) -> bool:
        return self.state == "established"


def _any(msg: Any) -> PbAny:
    a = PbAny()
    a.Pack(msg)
    return a


def _rd(text: str) -> PbAny:
    admin, _, assigned = text.rpartition(":")
    try:
        ipaddress.IPv4Address(admin)
        return _any(attrs.RouteDistinguisherIPAddress(admin=admin, assigned=int(assigned)))
    except ValueError:
        return _any(attrs.RouteDistinguisherTwoOctetASN(admin=int(admin),
                                                        assigned=int(assigned)))


def _rd_text(a: PbAny) -> str:
    for cls in (attrs.RouteDistinguisherIPAddress, attrs.RouteDistinguisherTwoOctetASN,
                attrs.RouteDistinguisherFourOctetASN):
        if a.Is(cls.DESCRIPTOR):
            m = cls()
            a.Unpack(m)
            return f"{m.admin}:{m.assigned}"
    return ""


def _communities(rts: Iterable[str], seq: int = 0) -> PbAny:
    comms = [_any(attrs.EncapExtended(tunnel_type=TUNNEL_VXLAN))]
    for rt in rts:
        asn, _, val = rt.partition(":")
        comms.append(_any(attrs.TwoOctetAsSpecificExtended(
            is_transitive=True, sub_type=RT_SUBTYPE, asn=int(asn), local_admin=int(val))))
    if seq:
        comms.append(_any(attrs.MacMobilityExtended(sequence_num=seq)))
    return _any(attrs.ExtendedCommunitiesAttribute(communities=comms))


class GobgpClient:
    """A connection to one gobgpd's API at `target` ("HOST:PORT")."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target)
        self._stub = api_grpc.GobgpApiStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, stream: bool = False) -> Any:
        """One call; a streaming one is read whole here, where its errors
        surface."""
        try:
            reply = getattr(self._stub, method)(request, timeout=TIMEOUT_S)
            return list(reply) if stream else reply
        except grpc.RpcError as exc:
            raise GobgpError(f"gobgpd {self.target}: {method}: {exc.code().name}: "
                             f"{exc.details()}") from None

    # Sessions.

    def router_id(self) -> str:
        resp = self._call("GetBgp", api.GetBgpRequest())
        return str(getattr(resp, "global").router_id)     # `global` is a keyword

    def sessions(self) -> list[Session]:
        out = []
        for r in self._call("ListPeer", api.ListPeerRequest(), stream=True):
            st = r.peer.state
            name = api.PeerState.SessionState.Name(st.session_state).lower()
            received = accepted = 0
            for afi in r.peer.afi_safis:
                received += afi.state.received
                accepted += afi.state.accepted
            out.append(Session(r.peer.conf.neighbor_address, name, received, accepted))
        return out

    # Routes.

    def add(self, route: MacRoute | ImetRoute) -> bytes:
        """Advertises `route`; returns its uuid (for delete())."""
        origin = _any(attrs.OriginAttribute(origin=0))
        if isinstance(route, MacRoute):
            nlri = attrs.EVPNMACIPAdvertisementRoute(
                rd=_rd(route.rd), esi=attrs.EthernetSegmentIdentifier(type=0, value=bytes(9)),
                ethernet_tag=0, mac_address=route.mac,
                ip_address=route.ip or "0.0.0.0", labels=[route.vni])
            extra = [_communities(route.route_targets, route.seq)]
        else:
            nlri = attrs.EVPNInclusiveMulticastEthernetTagRoute(
                rd=_rd(route.rd), ethernet_tag=0, ip_address=route.originator)
            pmsi = attrs.PmsiTunnelAttribute(
                flags=0, type=PMSI_INGRESS_REPLICATION, label=route.vni,
                id=ipaddress.ip_address(route.originator).packed)
            extra = [_communities(route.route_targets), _any(pmsi)]
        reach = _any(attrs.MpReachNLRIAttribute(family=EVPN, next_hops=[route.nexthop],
                                                nlris=[_any(nlri)]))
        path = api.Path(family=EVPN, nlri=_any(nlri), pattrs=[origin, reach, *extra])
        resp = self._call("AddPath", api.AddPathRequest(table_type=api.GLOBAL, path=path))
        return bytes(resp.uuid)

    def delete(self, uuid: bytes) -> None:
        """Withdraws the path added with `uuid`."""
        self._call("DeletePath", api.DeletePathRequest(table_type=api.GLOBAL, family=EVPN,
                                                       uuid=uuid))

    def withdraw_own_evpn(self) -> int:
        """Withdraws every EVPN path this gobgpd originates (left over by a
        previous run of ours); returns how many."""
        n = 0
        for r in self._call("ListPath", api.ListPathRequest(table_type=api.GLOBAL,
                                                            family=EVPN), stream=True):
            for p in r.destination.paths:
                if p.neighbor_ip in ("", _NIL):
                    self._call("DeletePath", api.DeletePathRequest(
                        table_type=api.GLOBAL, family=EVPN, path=p))
                    n += 1
        return n

    def list_evpn(self) -> list[MacRoute | ImetRoute]:
        """Every EVPN type 2 and type 3 path of the global RIB, ours and
        received, best or not."""
        out: list[MacRoute | ImetRoute] = []
        for r in self._call("ListPath", api.ListPathRequest(table_type=api.GLOBAL,
                                                            family=EVPN), stream=True):
            for p in r.destination.paths:
                route = _decode(p)
                if route is not None:
                    out.append(route)
        return out


def _decode(p: Any) -> MacRoute | ImetRoute | None:
    if p.is_withdraw:
        return None
    nexthop, rts, seq, pmsi_label = "", [], 0, None
    for a in p.pattrs:
        if a.Is(attrs.MpReachNLRIAttribute.DESCRIPTOR):
            m = attrs.MpReachNLRIAttribute()
            a.Unpack(m)
            nexthop = m.next_hops[0] if m.next_hops else ""
        elif a.Is(attrs.ExtendedCommunitiesAttribute.DESCRIPTOR):
            m = attrs.ExtendedCommunitiesAttribute()
            a.Unpack(m)
            for c in m.communities:
                if c.Is(attrs.TwoOctetAsSpecificExtended.DESCRIPTOR):
                    rt = attrs.TwoOctetAsSpecificExtended()
                    c.Unpack(rt)
                    if rt.sub_type == RT_SUBTYPE:
                        rts.append(f"{rt.asn}:{rt.local_admin}")
                elif c.Is(attrs.MacMobilityExtended.DESCRIPTOR):
                    mm = attrs.MacMobilityExtended()
                    c.Unpack(mm)
                    seq = mm.sequence_num
        elif a.Is(attrs.PmsiTunnelAttribute.DESCRIPTOR):
            m = attrs.PmsiTunnelAttribute()
            a.Unpack(m)
            pmsi_label = m.label
    neighbor = None if p.neighbor_ip in ("", _NIL) else p.neighbor_ip
    if p.nlri.Is(attrs.EVPNMACIPAdvertisementRoute.DESCRIPTOR):
        n = attrs.EVPNMACIPAdvertisementRoute()
        p.nlri.Unpack(n)
        ip = None if n.ip_address in ("", _NIL, "0.0.0.0") else n.ip_address
        return MacRoute(vni=n.labels[0] if n.labels else 0, mac=n.mac_address.lower(),
                        nexthop=nexthop, rd=_rd_text(n.rd), route_targets=tuple(rts),
                        seq=seq, ip=ip, neighbor=neighbor, uuid=bytes(p.uuid))
    if p.nlri.Is(attrs.EVPNInclusiveMulticastEthernetTagRoute.DESCRIPTOR):
        n = attrs.EVPNInclusiveMulticastEthernetTagRoute()
        p.nlri.Unpack(n)
        return ImetRoute(vni=pmsi_label or 0, originator=n.ip_address, nexthop=nexthop,
                         rd=_rd_text(n.rd), route_targets=tuple(rts), neighbor=neighbor,
                         uuid=bytes(p.uuid))
    return None
