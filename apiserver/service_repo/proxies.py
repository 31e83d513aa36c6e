"""Owns what a request's proxy headers are believed for: the client's address and HTTPS.

A request's peer is whoever opened the connection. When the peer is one of the reverse proxies in
``apiserver.trusted_proxies`` (addresses or CIDR blocks), the client is found in the proxies'
``X-Forwarded-For`` chain: from its right end (the hop our proxy added) leftwards, past every
hop that is itself a trusted proxy, the first other address. Hops further left were written by the
client or by proxies we do not know and prove nothing. The same trusted peer's
``X-Forwarded-Proto: https`` says the client came over HTTPS. From any other peer both headers
are ignored, so a client talking to the server directly cannot claim another address (and slip
out of the per-address sign-in throttle) or HTTPS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, also as some proxies write a hop: with a port (``203.0.113.7:5555``,
    ``[2001:db8::1]:5555``) or an IPv6 one in brackets."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    def __init__(self, entries: Iterable[str] = ()):
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ValueError(f"apiserver.trusted_proxies: {entry!r} is not an IP address or CIDR block") \
                    from None
        self.networks = tuple(networks)

    def trusts(self, address: str | None) -> bool:
        return self._listed(_address(address or ""))

    def _listed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and any(ip in net for net in self.networks)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the peer's own, unless a trusted proxy forwarded the request."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            ip = _address(hop)
            if ip is None:  # not an address (a garbled or obfuscated hop): the last known one stands
                break
            client = str(ip)
            if not self._listed(ip):
                break
        return client

    def https(self, peer: str | None, forwarded_proto: str | None) -> bool:
        """Whether a trusted proxy says the client came over HTTPS."""
        return self.trusts(peer) and (forwarded_proto or "").split(",")[0].strip().lower() == "https"
