"""Naming the contracts a session's view met unnamed, apart from the connection itself.

A trade placed elsewhere (the website, a copier) in a contract no snapshot listed and nobody here
looked up arrives with a contract id but no name. Unnamed, its position matched no symbol (read as
flat for that contract) and its fills could not be priced or mirrored. This job asks Tradovate for
those names in the background, batched and backed off, so the connection loop stays about the
connection; the session only tells it when the view may have met one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from jtrades.broker.base import BrokerEvent, Fill, Position
from jtrades.broker.tradovate.hub import EventHub
from jtrades.broker.tradovate.view import AccountView
from jtrades.errors import BrokerPenalty, JtradesError

log = structlog.get_logger(__name__)

_NAMED = (Position, Fill)  # entities that carry their contract's name
NAMING_FIRST_WAIT_S = 1.0  # contract names asked again after this, doubling…
NAMING_MAX_WAIT_S = 60.0  # …up to this


class ContractNamer:
    """At most one naming task per session; started when the view may hold an unnamed contract."""

    def __init__(
        self,
        view: AccountView,
        hub: EventHub,
        request: Callable[..., Awaitable[Any]],
        stopped: asyncio.Event,
        label: str = "",
    ) -> None:
        self.view = view
        self.hub = hub
        self._request = request
        self._stopped = stopped
        self.label = label
        self._task: asyncio.Task[None] | None = None

    def notice(self, events: Iterable[BrokerEvent]) -> None:
        """Name soon if one of these events carries an entity whose contract has no name."""
        for ev in events:
            if isinstance(ev.entity, _NAMED) and not ev.entity.symbol:
                self.soon()
                break

    def soon(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._name_contracts(), name=f"names-{self.label}")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the naming task; it, for the session's close to wait on (bounded, with the
        session's other tasks), or None."""
        task = self._task
        if task is not None:
            task.cancel()
        return task

    async def _name_contracts(self) -> None:
        """Name the contracts the view met unnamed (see the module doc). One ``contract/items``
        request for all of them; while some stay unnamed (a refusal, a penalty, an answer without
        them) it is asked again after a wait that doubles up to a minute — never once per event,
        whatever the stream brings meanwhile, and never before a penalty's p-time (rule 7)."""
        wait = NAMING_FIRST_WAIT_S
        while not self._stopped.is_set():
            pause = wait
            ids = self.view.unknown_contract_ids()
            if not ids:
                return
            try:
                rows = await self._request(
                    "contract/items", query="ids=" + ",".join(str(i) for i in sorted(ids))
                )
            except JtradesError as exc:
                rows, why = None, str(exc)
                if isinstance(exc, BrokerPenalty):  # the session refuses until then anyway
                    pause = max(wait, exc.wait_s)
            else:
                why = "Tradovate named none of them"
            names = {
                int(r["id"]): str(r["name"])
                for r in (rows if isinstance(rows, list) else ())
                if isinstance(r, dict) and r.get("id") is not None and r.get("name")
            }
            if names:
                self.hub.publish(self.view.name_contracts(names))
            if not self.view.unknown_contract_ids():
                return
            log.warning(
                "tradovate.session.contracts_unnamed",
                session=self.label,
                contracts=sorted(self.view.unknown_contract_ids()),
                error=why,
                retry_s=round(pause, 1),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):  # not wait_for: it may drop a cancellation
                    await self._stopped.wait()
            wait = min(wait * 2, NAMING_MAX_WAIT_S)
