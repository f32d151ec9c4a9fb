"""Where a job's webhook may be posted. A callback URL names a host that a producer chose, so the
fleet refuses hosts that resolve to its own network (loopback, private, link-local, ...): otherwise
a submit could make the fleet POST to its Redis, its metadata service or an internal admin page."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from geoqueue.callback_url import check_callback_url

# Why a host is refused, never where it led: the address a name resolves to would let a producer
# map the fleet's network through its DNS.
NOT_PUBLIC = "a loopback, private or other non-public address"


class CallbackRefused(ValueError):
    """The callback URL may not be used; the message says why (never the URL's query, nor the
    address its host resolves to)."""


def addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CallbackRefused(f"callback_url: {host} does not resolve ({exc.strerror})") from None
    found = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        found.append(address)
    return found


def check_destination(url: str, allow_private: bool) -> str:
    """The URL if a webhook may go there; CallbackRefused otherwise."""
    check_callback_url(url)
    parts = urlsplit(url)
    if allow_private:
        return url
    for address in addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        if not address.is_global or address.is_multicast:
            raise CallbackRefused(f"callback_url: {parts.hostname} resolves to {NOT_PUBLIC}, which callbacks "
                                  "may not use")
    return url
