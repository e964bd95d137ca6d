"""What ``jtrades status`` says of a flatten request, for the person watching it."""

from __future__ import annotations

from typing import Any

from jtrades.cli.control import _flatten_line


def test_a_flatten_line_counts_what_was_closed_cancelled_left_and_refused() -> None:
    progress: dict[str, Any] = {
        "pass": 3,
        "at": "2026-11-29T12:00:02+00:00",
        "liquidations": 2,
        "closed": 2,
        "cancelled": 1,
        "left": [{"sub_account_id": 4, "symbol": None, "why": "broker view not synced"}],
        "refused": [],
    }
    request = {
        "account": "alice-demo",
        "requested_at": "2026-11-29T12:00:00+00:00",
        "state": "pending",
        "progress": progress,
    }
    line = _flatten_line(request)
    assert line.startswith("alice-demo, requested 2026-11-29 12:00:00 UTC: pending")
    assert "2 closed with their orders" in line
    assert "1 more cancelled" in line
    assert "1 left" in line
    assert "0 refused by the broker" in line
    # a request written before cancels were counted
    del progress["cancelled"]
    assert "0 more cancelled" in _flatten_line(request)
    assert _flatten_line({"requested_at": "t", "state": "done"}) == "everything, requested t: done"
