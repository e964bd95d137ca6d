"""4ef0cef turns an IPv4-mapped IPv6 sender (``::ffff:a.b.c.d``) into its IPv4 address before
matching, but leaves the configured networks as written: an allowlist or trusted-proxy entry
written in the mapped form (what a dual-stack listener showed in the refusals and logs before
the change, so what an operator copied into ``allowed_ips`` / ``trusted_proxies``) no longer
matches even the very address it names: after the upgrade every alert is refused."""

from __future__ import annotations

from jtrades.senders import Senders


def test_an_allowlist_entry_in_mapped_form_still_admits_that_address() -> None:
    s = Senders(("::ffff:52.89.214.238",), ())
    assert s.allowed("::ffff:52.89.214.238"), "the listed address itself is refused"
    assert s.allowed("52.89.214.238")


def test_a_trusted_proxy_in_mapped_form_is_still_trusted() -> None:
    from unittest.mock import MagicMock

    s = Senders(("52.89.214.238",), ("::ffff:127.0.0.1",))
    req = MagicMock()
    req.remote = "::ffff:127.0.0.1"
    req.headers.getall.return_value = ["52.89.214.238"]
    sender = s.address(req)
    assert sender == "52.89.214.238", f"the proxy is not trusted: the sender reads {sender}"
    assert s.allowed(sender)


def test_a_mapped_range_is_its_ipv4_range() -> None:
    s = Senders(("::ffff:10.0.0.0/104",), ())  # 10.0.0.0/8
    assert s.allowed("10.1.2.3")
    assert s.allowed("::ffff:10.200.0.1")
    assert not s.allowed("11.0.0.1")
    assert not s.allowed("2001:db8::1")
