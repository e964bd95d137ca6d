"""A claim whose connection fails with the statement sent (money rules 1 and 3).

The claim's connection runs through a TCP proxy to the real Postgres that can cut both sides at
the server's next answer (the statement ran and committed; its reply never came) or at the
client's next statement (it never reached the server). Committed, the orders must go out:
TradingView's re-send of a 503 would be a duplicate and send nothing. Not committed, nothing is
stored and nothing sent, and the 503 stands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from jtrades.broker.base import Side
from jtrades.db import _POOLED, Lane, _init_connection
from jtrades.engine import claim_doubt
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.signal import Action, Signal
from jtrades.errors import StorageUnavailable
from jtrades.store import signals as signal_store
from tests.integration.test_claim import delivery
from tests.integration.test_dispatch import (  # noqa: F401
    entry_with_stop,
    intents,
    items,
    link,
    setup,
)
from tests.polling import until


class CuttingProxy:
    """Forwards bytes to Postgres; armed, it cuts both sides at the next answer ("reply") or
    the next statement ("request"), without forwarding it."""

    def __init__(self, db_url: str) -> None:
        self.url = urlsplit(db_url)
        self.armed: str | None = None
        self.cut = asyncio.Event()
        self.down = False  # the server unreachable: every connection is cut at once
        self.silent = False  # ...or every new connection hangs (a failover, a stalled host)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def go_down(self) -> None:
        self.down = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        socket_dir = parse_qs(self.url.query).get("host", [""])[0]
        port = self.url.port or 5432
        if socket_dir.startswith("/"):  # the embedded server: a Unix socket
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{port}")
        return await asyncio.open_connection(self.url.hostname or "127.0.0.1", port)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self.down:
            cw.transport.abort()
            return
        if self.silent:  # accepted, never answered: a connection attempt hangs
            self._writers.append(cw)
            with contextlib.suppress(ConnectionError):
                await cr.read()
            return
        sr, sw = await self._upstream()
        self._writers += [cw, sw]
        await asyncio.gather(self._pipe(cr, sw, "request"), self._pipe(sr, cw, "reply"))

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, kind: str) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await r.read(65536):
                if self.armed == kind:
                    self.armed = None
                    for writer in self._writers:
                        writer.transport.abort()
                    self.cut.set()
                    return
                w.write(data)
                await w.drain()
        w.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()


async def _connect_through(proxy: CuttingProxy, port: int) -> asyncpg.Connection:
    url = proxy.url
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=url.username or "postgres",
        password=url.password,
        database=url.path.lstrip("/"),
        ssl=False,
        **_POOLED,
    )
    await _init_connection(conn)
    return conn


@pytest.fixture
async def lane(pool: asyncpg.Pool, db_url: str) -> AsyncIterator[tuple[Lane, CuttingProxy]]:
    proxy = CuttingProxy(db_url)
    port = await proxy.start()

    async def through_proxy() -> asyncpg.Connection:
        return await _connect_through(proxy, port)

    claims = Lane(pool, through_proxy)
    await claims.open()
    assert claims.connection is not None
    try:
        yield claims, proxy
    finally:
        await claims.close()
        await proxy.close()


async def _deliver(
    d: Dispatcher,
    pool: asyncpg.Pool,
    ctx: dict[str, Any],
    subs: list[int],
    key: str,
    doubt: asyncio.Event | None = None,
) -> Any:
    sid = await signal_store.SignalIds(pool, block=1).take()
    dl = replace(delivery(sid, ctx["rec"], Signal(Action.BUY, ticker="MNQZ6"), key), in_doubt=doubt)
    plan = entry_with_stop(Side.BUY, 1, "21490")
    return sid, await d.dispatch(
        sid, dl.received_at, items(ctx["paper"], ctx["contract"], subs, plan), delivery=dl
    )


async def test_a_claim_that_committed_but_lost_its_answer_still_sends(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
) -> None:
    claims, proxy = lane
    d = Dispatcher(pool, ttl_s=30, claims=claims)
    subs = setup["subs"][:1]
    await _deliver(d, pool, setup, subs, "warm")  # the lane has prepared the claim now
    assert claims.connection is not None  # ...on its own connection, not the pool's
    assert setup["paper"].positions(1)[0].net_pos == 1

    proxy.armed = "reply"
    sid, result = await _deliver(d, pool, setup, subs, "lost-answer")

    assert proxy.cut.is_set()
    assert result.duplicate_of is None
    assert result.orders == 2  # entry and stop
    assert setup["paper"].positions(1)[0].net_pos == 2
    rows = [r for r in await intents(pool) if r["cl_ord_id"].startswith(f"jt-{sid}-")]
    assert [r["state"] for r in rows] == ["sent", "sent"]


async def test_a_claim_that_never_reached_the_server_stores_and_sends_nothing(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
) -> None:
    claims, proxy = lane
    d = Dispatcher(pool, ttl_s=30, claims=claims)
    subs = setup["subs"][:1]

    proxy.armed = "request"
    with pytest.raises(StorageUnavailable):
        await _deliver(d, pool, setup, subs, "never-arrived")

    assert proxy.cut.is_set()
    assert await pool.fetchval("SELECT count(*) FROM signals") == 0
    assert await intents(pool) == []
    assert setup["paper"].positions(1) == []


async def test_a_claim_still_waiting_on_the_server_is_ended_before_its_fate_is_read(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
) -> None:
    """The claim waits for a racing delivery's key when its connection breaks: looking for its
    row then finds none, and it could still commit once the racer rolls back — its intents on
    disk, unsent, and the re-send a duplicate. Its server process is ended first."""
    claims, proxy = lane
    d = Dispatcher(pool, ttl_s=30, claims=claims)
    subs = setup["subs"][:1]
    await _deliver(d, pool, setup, subs, "warm")
    assert claims.connection is not None
    backend = claims.connection.get_server_pid()
    warm_id = await pool.fetchval("SELECT max(id) FROM signals")

    racer = await pool.acquire()
    tx = racer.transaction()
    await tx.start()
    try:
        await racer.execute(  # a racing delivery holds the key, uncommitted
            "INSERT INTO signal_keys (recorder_id, idem_key, signal_id) VALUES ($1, $2, $3)",
            setup["rec"],
            "raced",
            warm_id,
        )
        sid = await signal_store.SignalIds(pool, block=1).take()
        dl = delivery(sid, setup["rec"], Signal(Action.BUY, ticker="MNQZ6"), "raced")
        plan = entry_with_stop(Side.BUY, 1, "21490")
        work = asyncio.create_task(
            d.dispatch(sid, dl.received_at, items(setup["paper"], setup["contract"], subs, plan),
                       delivery=dl)
        )  # fmt: skip
        for _ in range(500):  # the claim reached the server and waits for the key
            waiting = await pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", backend
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting
        proxy.armed = "reply"
        await proxy.close()  # the connection breaks with the statement in flight
        with pytest.raises(StorageUnavailable):
            await work
    finally:
        await tx.rollback()  # the racer gives the key up
        await pool.release(racer)

    await asyncio.sleep(0.3)  # a claim still alive would take the key and commit now
    assert await pool.fetchval("SELECT count(*) FROM signals WHERE id = $1", sid) == 0
    assert [r for r in await intents(pool) if r["cl_ord_id"].startswith(f"jt-{sid}-")] == []
    assert setup["paper"].positions(1)[0].net_pos == 1  # the warm-up's entry only


@pytest.fixture
async def far_pool(db_url: str) -> AsyncIterator[tuple[asyncpg.Pool, CuttingProxy]]:
    """A pool whose server can become unreachable (``CuttingProxy.go_down``)."""
    proxy = CuttingProxy(db_url)
    port = await proxy.start()
    pool = await asyncpg.create_pool(
        min_size=0, max_size=2, connect=lambda *_, **__: _connect_through(proxy, port)
    )
    try:
        yield pool, proxy
    finally:
        pool.terminate()
        await proxy.close()


async def _warmed(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
    ttl_s: float,
) -> tuple[Dispatcher, CuttingProxy, CuttingProxy, list[int]]:
    """A dispatcher that claims through ``lane`` and asks fates through ``far_pool``, its
    claim prepared by one delivery (long 1): it, the two proxies and the sub-accounts."""
    claims, proxy = lane
    fates, gone = far_pool
    d = Dispatcher(fates, ttl_s=ttl_s, claims=claims)
    subs = setup["subs"][:1]
    await _deliver(d, pool, setup, subs, "warm")
    assert setup["paper"].positions(1)[0].net_pos == 1
    return d, proxy, gone, subs


def _cut(
    d: Dispatcher,
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    subs: list[int],
    key: str,
    proxy: CuttingProxy,
    at: str,
) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """Deliver ``key`` with its claim's connection cut ``at`` the "reply" (it committed, its
    answer is lost) or the "request" (it never reached the server): the dispatch, and the
    event that says it is in doubt."""
    proxy.armed = at
    doubt = asyncio.Event()
    return asyncio.create_task(_deliver(d, pool, setup, subs, key, doubt)), doubt


async def _resent_is_a_repeat(
    d: Dispatcher,
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    subs: list[int],
    key: str,
    first: int,
) -> None:
    """TradingView's re-send of ``key`` is a duplicate of signal ``first``, which traded once."""
    _, again = await _deliver(d, pool, setup, subs, key)
    assert again.duplicate_of == first
    assert setup["paper"].positions(1)[0].net_pos == 2  # the warm-up's entry and the alert's


async def _held(work: asyncio.Task[Any], for_s: float) -> bool:
    """Whether ``work`` is still running after ``for_s``."""
    await asyncio.sleep(for_s)
    return not work.done()


async def test_a_lost_answer_whose_fate_the_database_cannot_tell_yet_is_asked_again(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
) -> None:
    """The claim committed and its answer was lost while the database became unreachable:
    the dispatch goes on asking until it can tell, then sends, and TradingView's re-send of the
    503 is a duplicate that sends nothing (before, the fate was asked once: the re-send was a
    duplicate and the orders were never sent)."""
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=30)

    gone.go_down()
    work, doubt = _cut(d, pool, setup, subs, "in-doubt", proxy, "reply")
    assert await _held(work, 1.0)  # the fate still asked
    assert proxy.cut.is_set()
    assert doubt.is_set()  # the webhook answers 503 at its bound
    assert setup["paper"].positions(1)[0].net_pos == 1  # nothing sent meanwhile
    gone.down = False

    sid, result = await asyncio.wait_for(work, 10)
    assert result.duplicate_of is None
    assert result.orders == 2  # entry and stop
    await _resent_is_a_repeat(d, pool, setup, subs, "in-doubt", sid)


async def test_a_fate_unknown_until_the_ttl_sends_nothing(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
) -> None:
    """Past the signal's TTL nothing may be sent, whatever the fate: the dispatch gives up
    with the 503's error, and its committed intents stay unsent for reconciliation."""
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=1.5)

    gone.go_down()
    work, _ = _cut(d, pool, setup, subs, "never-known", proxy, "reply")
    assert await _held(work, 1.0)
    with pytest.raises(StorageUnavailable, match="stored in time"):
        await asyncio.wait_for(work, 10)

    assert setup["paper"].positions(1)[0].net_pos == 1  # the warm-up's entry only
    sid = await pool.fetchval("SELECT max(id) FROM signals")
    rows = [r for r in await intents(pool) if r["cl_ord_id"].startswith(f"jt-{sid}-")]
    assert [r["state"] for r in rows] == ["pending", "pending"]  # committed, never sent


async def test_a_claim_that_did_not_commit_is_decided_by_the_resend(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
) -> None:
    """A Postgres crash: the claim never committed and the server is away for a while. The
    webhook answered 503 at its bound (``doubt``); the dispatch learns, once the server is
    back, that nothing was stored and sends nothing, and TradingView's re-send trades once
    (the review's case: held until the server was back, the 503 came after TradingView hung
    up, nothing re-sent it, and the alert was lost)."""
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=30)

    gone.go_down()
    first, doubt = _cut(d, pool, setup, subs, "crashed", proxy, "request")
    await asyncio.wait_for(doubt.wait(), 5)
    gone.down = False
    with pytest.raises(StorageUnavailable, match="before it committed"):
        await asyncio.wait_for(first, 10)

    _, resent = await _deliver(d, pool, setup, subs, "crashed")
    assert resent.duplicate_of is None
    assert resent.orders == 2
    assert setup["paper"].positions(1)[0].net_pos == 2  # the warm-up's and the re-send's


async def test_the_claims_server_process_is_ended_once(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the claim's server process is known gone, a later ask does not end its pid again:
    another process may have it by then (the review's case: each ask ended it anew)."""
    end, probe = signal_store._end_backend, signal_store.claim_fate
    ended: list[int] = []

    async def ending(conn: Any, pid: int) -> None:
        ended.append(pid)
        await end(conn, pid)

    async def first_probe_lost(*args: Any) -> Any:
        if len(ended) == 1 and not probed:  # gone; the first probe's connection fails
            probed.append(True)
            raise StorageUnavailable("database unavailable: connection lost")
        return await probe(*args)

    probed: list[bool] = []
    monkeypatch.setattr(signal_store, "_end_backend", ending)
    monkeypatch.setattr(signal_store, "claim_fate", first_probe_lost)
    claims, proxy = lane
    d = Dispatcher(pool, ttl_s=30, claims=claims)
    subs = setup["subs"][:1]
    await _deliver(d, pool, setup, subs, "warm")
    proxy.armed = "reply"
    _, result = await _deliver(d, pool, setup, subs, "lost-answer")
    assert proxy.cut.is_set()
    assert result.orders == 2
    assert probed  # asked twice
    assert len(ended) == 1


async def test_a_claim_whose_accounts_are_all_behind_is_asked_until_known(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
) -> None:
    """Every account held by another dispatch: the claim stores no intent, its accounts are
    planned once stored. Asked once like a claim with no order (the review's case), it was
    answered 503 though stored, the re-send was a duplicate and the held account never
    traded."""
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=30)
    held = d.lock_for(link(subs[0], 1))
    await until(lambda: not held.locked(), what="the warm-up's settle")
    await held.acquire()  # an earlier alert's settle, or a protection, holds the account

    gone.go_down()
    first, _ = _cut(d, pool, setup, subs, "behind", proxy, "reply")
    assert await _held(first, 1.0)
    assert proxy.cut.is_set()
    gone.down = False
    held.release()

    sid, result = await asyncio.wait_for(first, 10)
    assert result.duplicate_of is None
    assert result.orders == 2
    await _resent_is_a_repeat(d, pool, setup, subs, "behind", sid)


async def test_a_delivery_is_in_doubt_from_the_first_ask(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
) -> None:
    """An ask may hang (new connections to a server that does not answer) up to the TTL: were
    the delivery in doubt only once an ask failed, its 503 came after TradingView hung up
    (the review's case)."""
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=30)
    gone.go_down()  # the pool's connections are cut...
    gone.down, gone.silent = False, True  # ...and new ones hang
    first, doubt = _cut(d, pool, setup, subs, "hangs", proxy, "request")
    try:
        await asyncio.wait_for(doubt.wait(), 2)
        assert not first.done()  # the first ask still hangs
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first


async def test_an_ask_that_hangs_is_cut_and_asked_again(
    pool: asyncpg.Pool,
    setup: dict[str, Any],  # noqa: F811
    lane: tuple[Lane, CuttingProxy],
    far_pool: tuple[asyncpg.Pool, CuttingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New connections hang for a while, then the server answers: the ask that hung is cut
    (``MOST_ASK_S``, 1 s here) and the next one learns that the claim committed. Given the
    whole TTL, the one ask hung to the end and the stored alert was never sent (the review's
    case)."""
    monkeypatch.setattr(claim_doubt, "MOST_ASK_S", 1.0)
    d, proxy, gone, subs = await _warmed(pool, setup, lane, far_pool, ttl_s=30)
    gone.go_down()  # the pool's connections are cut...
    gone.down, gone.silent = False, True  # ...and new ones hang
    work, doubt = _cut(d, pool, setup, subs, "hang-then-back", proxy, "reply")
    await asyncio.wait_for(doubt.wait(), 2)
    await asyncio.sleep(0.5)
    gone.silent = False

    _, result = await asyncio.wait_for(work, 10)
    assert result.orders == 2
    assert setup["paper"].positions(1)[0].net_pos == 2
