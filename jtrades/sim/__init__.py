"""``jtrades sim``: a Tradovate-protocol simulator over real sockets, for tests and rehearsals.

Modules: ``config`` (logins, accounts, contracts by a calendar rule, the rules' numbers), ``auth``
(tokens, sessions, login budget, penalty tickets, OAuth codes), ``exchange`` (orders, matching,
positions, P&L: pure, no I/O) over ``entities``, ``validate`` + ``orders`` (strict order endpoints),
``api`` (every endpoint, shared by REST and WebSocket), ``rest``, ``ws``, ``world`` (shared state and
event fan-out), ``faults``, ``app`` (aiohttp app, ``/sim`` control endpoints, serving).

Sources: TRADOVATE.md, the official OpenAPI spec (tradovate/example-api-csharp-trading,
``swagger/services.swagger.yaml``, 2021), the partner docs (partner.tradovate.com) and public clients.
Where they disagree or are silent, this is what the simulator does:

- Sessions per login: partner docs say 2, one source says 1 without an add-on → 2 (configurable).
- WebSockets per user: partner docs say 50, oldest closed and its token revoked → same, with
  ``shutdown`` ``reasonCode: ConnectionQuotaReached``; a session knocked off by a newer login gets the
  same reason code (the real code for that case is undocumented).
- Token lifetime "80–90 minutes" → 80 minutes (configurable); renewal keeps the old token valid until
  its own expiry (undocumented).
- ``cid`` string (spec) vs number (examples) → both accepted.
- Unknown symbol: TRADOVATE.md notes "Access is denied" is also seen; the spec enum has
  ``InvalidContract`` → ``failureReason: InvalidContract``.
- ``startorderstrategy``: the spec answers ``OrderStrategyStatusResponse`` → failures are
  ``{"errorText"}`` (not ``failureReason``); the spec has no ``isAutomated`` there but clients send it
  (top level and in ``entryVersion``) → accepted, ``false`` rejected. Bracket offsets: numbers, or
  numeric strings like ``"+80"`` which public clients send. Bracket quantities must add up to the
  entry. Several brackets with the same stop share ONE stop order whose quantity shrinks when a
  target fills (real Tradovate's exact order layout for multi-bracket strategies is undocumented).
  ``interruptorderstrategy`` cancels the strategy's open orders.
- ``placeoso`` brackets wait as ``Suspended`` orders (``parentId`` = entry) and become Working on the
  entry's fill; two brackets are OCO (``ocoId`` on each).
- ``liquidateposition`` answers ``{"orderId"}`` of the closing market order, ``{}`` when flat.
- ``modifyorder``/``cancelorder`` answer ``{"commandId"}`` and take effect at once (the ``props``
  events follow); a finished order → ``failureReason: TooLate``.
- Item or name not found → HTTP 404 (partner docs, "error handling"); unknown endpoint → 404 with
  body ``"Not found: x/y"`` and the same text in a WebSocket ``d``.
- Event order (inferred in TRADOVATE.md): order Created PendingNew, orderVersion, command,
  [orderStrategyLink], order Updated Working; a fill → fill, position, fillPair (FIFO, when it
  closes something), cashBalance, order Updated Filled. ``executionReport`` entities are not
  produced; a ``commandReport`` only for a rejection after acceptance. Events are
  sent before the answer of the request that caused them (the ``events_after`` fault flips that).
- Fills are whole unless the ``partial_fills`` fault splits them into lots; see ``exchange``
  for the matching rules.
"""
