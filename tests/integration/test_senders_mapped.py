"""The allowlist and trusted proxies vs IPv4-mapped IPv6 addresses.

A reverse proxy listening dual-stack (nginx ``listen [::]:443 ipv6only=off``, HAProxy ``v4v6``)
writes an IPv4 client as ``::ffff:a.b.c.d`` in X-Forwarded-For. That is the IPv4 address
a.b.c.d (RFC 4291 §2.5.5.2): TradingView's sender must pass an IPv4 allowlist, and an
IPv4 proxy range must still be trusted when a hop names it that way.
"""

from __future__ import annotations

import asyncpg

from jtrades.config import Settings
from jtrades.senders import Senders
from tests.integration.test_server import ALERT, serving

TV = "52.89.214.238"  # one of TradingView's published senders


async def test_ipv4_mapped_forwarded_sender_is_on_an_ipv4_allowlist(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    server = settings.server.model_copy(
        update={"allowed_ips": (TV,), "trusted_proxies": ("127.0.0.1",)}
    )
    async with serving(settings.model_copy(update={"server": server}), pool) as s:
        status, body = await s.post(ALERT, headers={"X-Forwarded-For": f"::ffff:{TV}"})
        assert status == 200, body


async def test_an_ipv4_mapped_hop_of_a_trusted_proxy_range_is_skipped(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """client (TradingView) -> CDN 173.245.48.1 -> dual-stack nginx on 127.0.0.1: the CDN's hop,
    written mapped, is a trusted proxy, and the sender is the hop before it."""
    server = settings.server.model_copy(
        update={"allowed_ips": (TV,), "trusted_proxies": ("127.0.0.1", "173.245.48.0/20")}
    )
    async with serving(settings.model_copy(update={"server": server}), pool) as s:
        xff = f"{TV}, ::ffff:173.245.48.1"
        status, body = await s.post(ALERT, headers={"X-Forwarded-For": xff})
        assert status == 200, body


def test_an_ipv4_mapped_address_is_the_ipv4_address_on_the_allowlist() -> None:
    assert Senders((TV,), ()).allowed(f"::ffff:{TV}")
