"""Who sent a webhook: the peer address, or behind trusted proxies the nearest untrusted hop of
X-Forwarded-For, and whether the allowlist admits it."""

from __future__ import annotations

import ipaddress

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Senders:
    def __init__(self, allowed_ips: tuple[str, ...], trusted_proxies: tuple[str, ...]) -> None:
        self._allowed = _networks(allowed_ips)
        self._proxies = _networks(trusted_proxies)

    def allowed(self, address: str | None) -> bool:
        """True when no allowlist is configured, else whether ``address`` is on it."""
        return not self._allowed or _in(address, self._allowed)

    def address(self, request: web.Request) -> str | None:
        """The sender's address: the peer, or behind trusted proxies the nearest untrusted hop
        of X-Forwarded-For (read from the right: only our proxies' own entries are reliable)."""
        peer = request.remote
        if not self._proxies or not _in(peer, self._proxies):
            return _valid_ip(peer)
        header = ",".join(request.headers.getall("X-Forwarded-For", []))
        hops = [h.strip() for h in header.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _in(hop, self._proxies):
                return _valid_ip(hop)
        return _valid_ip(hops[0]) if hops else _valid_ip(peer)


def _networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(_unmapped(ipaddress.ip_network(n, strict=False)) for n in specs)


def _unmapped(net: Network) -> Network:
    """An IPv4 network written in IPv6 form (``::ffff:a.b.c.d/128``, copied from an older log)
    as the IPv4 network it is: the sender's address is compared in IPv4 form (``_ip``)."""
    mapped = net.network_address.ipv4_mapped if isinstance(net, ipaddress.IPv6Network) else None
    if mapped is None or net.prefixlen < 96:
        return net
    return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")


def _valid_ip(text: str | None) -> str | None:
    addr = _ip(text)
    return None if addr is None else str(addr)


def _in(address: str | None, networks: tuple[Network, ...]) -> bool:
    addr = _ip(address)
    return addr is not None and any(addr in net for net in networks)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text``; an IPv4 one written in IPv6 form (``::ffff:a.b.c.d``, as a
    dual-stack listener or proxy writes it) is that IPv4 address, so IPv4 lists match it."""
    if text is None:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
