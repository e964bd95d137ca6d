"""Four logins flattened with `halt --account X --flatten`, each refused by its broker: the
operator must be told about every account whose positions are still open. The notifier's
repeat filter keys the source on sub_account_id/account_id/session/username/symbol, but the
flatten events name their login as ``account=<label>``: the four accounts are one "source",
and the fourth account's ``engine.flatten_refused`` is held back (never sent)."""

from __future__ import annotations

import io
import logging

import structlog

from jtrades import logging as jlog
from jtrades.db import Database
from jtrades.notify import Notifier, Target
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
    wait_for,
)
from tests.integration.test_flatten import Refusing, Start
from tests.integration.test_flatten import start as start

LABELS = ["nf-a", "nf-b", "nf-c", "nf-d"]


async def test_a_refused_flatten_of_each_of_four_logins_is_notified_for_each(
    database: Database, start: Start
) -> None:
    pool = database.pool
    u = await make_user(pool, "nf")
    rec = await make_recorder(pool, u, "rec", size=1)
    subs, brokers = [], {}
    for label in LABELS:
        (sub,) = await make_paper_account(pool, u, label)
        subs.append(sub)
        aid, _ = await account_of(pool, sub)
        brokers[aid] = Refusing()
    await make_trader(pool, u, rec, [(s, 1) for s in subs])
    engine = await start(brokers)
    engine._flattener._max_refusals = 1
    engine._flattener._retry_s = engine._flattener._max_retry_s = 0.05
    await send(engine, pool, rec, buy())

    async def all_filled() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM order_intents WHERE state IN ('pending', 'sent', 'unknown')"
        )

    await wait_for(all_filled, "entries filled")
    for b in brokers.values():
        b.refuse = -1

    # the daemon's log pipeline, with the notifier as its sink (not started: it buffers)
    notifier = Notifier([Target("webhook", "http://127.0.0.1:9/hook")])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    jlog.configure("json", "info", stream=out, sink=notifier.processor)
    try:
        flattens = {
            f"2026-01-02T03:04:0{i}.000000+00:00": {
                "requested_at": f"2026-01-02T03:04:0{i}.000000+00:00",
                "account": label,
            }
            for i, label in enumerate(LABELS)
        }
        await pool.execute("UPDATE accounts SET halted = true")
        await pool.execute(
            "INSERT INTO system_flags (name, value) VALUES ('halted', $1)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            {"halted": False, "flattens": flattens},
        )
        await engine.config.refresh()

        async def all_refused() -> bool:
            return out.getvalue().count('"engine.flatten_refused"') >= len(LABELS)

        await wait_for(all_refused, "each login's refusal logged")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()

    told = sorted(
        n.fields.get("account") for n in notifier._buffer if n.event == "engine.flatten_refused"
    )
    # every account whose positions are still open must reach the operator
    assert told == LABELS, f"notified for {told}; held back: {notifier.held}"
