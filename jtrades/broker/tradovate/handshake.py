"""The first words on a new socket of a session: ``authorize``, then the sync, apart from the loop.

Once the server has said ``o`` (TRADOVATE.md "WebSocket"), we send ``authorize`` with the access
token, then ``user/syncrequest`` for the login's user, whose answer is the snapshot the view starts
from. What each refusal means is decided here; the session owns the socket, the view and what to
do when a connection ends.

Sync body: partner docs ask for ``{"accounts": [...], "splitResponses": true, "entityTypes": …}``,
retail examples send ``{"users": [userId]}`` and receive everything in one answer. We send the
``users`` form (one answer, all entity types, every account of the login) and, when the token does
not carry a user id, the ``accounts`` form without ``splitResponses``.

A 401 on ``authorize`` drops the token (the next connect logs in again). A penalty ticket comes as
a 200 with the ticket in ``d`` and is raised as ``BrokerPenalty`` for the session to hold; one
with ``p-captcha`` fails the session as a login does (``CaptchaRequired``): a human has to act.
A 429 (or any ticket) pauses every connect of the pool through ``on_rate_limited``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jtrades.broker.tradovate.auth import AccessToken
from jtrades.broker.tradovate.codec import Response
from jtrades.broker.tradovate.lifecycle import TokenSource
from jtrades.broker.tradovate.outcomes import CaptchaPenalty, check_response
from jtrades.errors import BrokerRejected, CaptchaRequired, OutcomeUnknown, TransientBrokerError

# The session's way of sending one request on the socket being set up and awaiting its answer.
Call = Callable[[str, Any], Awaitable[Response]]


async def authorize_and_sync(
    call: Call,
    tokens: TokenSource,
    token: AccessToken,
    on_rate_limited: Callable[[], None] | None,
    label: str = "",
) -> dict[str, Any]:
    """Authorize the socket with ``token`` and return the login's snapshot."""
    auth = await call("authorize", token.token)
    if auth.status == 401:
        await tokens.invalidate(token.token)
        raise TransientBrokerError("Tradovate refused the token on authorize (401)")
    try:
        # a penalty comes as a 200 (its ticket in ``d``); a 429 pauses every connect
        check_response("authorize", auth, on_rate_limited)
    except CaptchaPenalty:
        raise CaptchaRequired(
            f"Tradovate wants a captcha for session {label}: log in once on the "
            "Tradovate website, or connect the account with OAuth; retrying extends the lock"
        ) from None
    except (BrokerRejected, OutcomeUnknown):
        raise TransientBrokerError(f"authorize answered {auth.status}") from None
    if token.user_id is not None:
        body: dict[str, Any] = {"users": [token.user_id]}
    else:  # a token of unknown user (an old stored row): name its accounts instead
        listed = check_response("account/list", await call("account/list", None), on_rate_limited)
        body = {"accounts": [int(a["id"]) for a in listed or () if isinstance(a, dict)]}
    sync = await call("user/syncrequest", body)
    data = check_response("user/syncrequest", sync, on_rate_limited)
    if not isinstance(data, dict):
        raise TransientBrokerError("user/syncrequest answered without a snapshot")
    return data
