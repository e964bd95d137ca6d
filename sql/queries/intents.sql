-- Order intents (money rules 1 and 2): written before anything is sent, then moved by results
-- and by reconciliation. Only jtrades/store/intents.py runs these.

-- name: intents.insert_many($1 intents: a JSON array of objects, see intents.as_rows)
-- One statement for every intent of a signal: atomic, and one round trip however many
-- sub-accounts. A clOrdId already written (a duplicate delivery) is skipped and not returned.
INSERT INTO order_intents
    (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind, symbol, side, qty, request,
     expires_at)
SELECT t.signal_id, t.trader_id, t.sub_account_id, t.cl_ord_id, t.step, t.kind, t.symbol, t.side,
       t.qty, t.request, t.expires_at
FROM jsonb_to_recordset($1::jsonb) AS t (signal_id bigint, trader_id bigint, sub_account_id bigint,
     cl_ord_id text, step smallint, kind text, symbol text, side text, qty integer, request jsonb,
     expires_at timestamptz)
ON CONFLICT (cl_ord_id) DO NOTHING
RETURNING id, cl_ord_id;

-- name: intents.mark_sent($1 id, $2 state, $3 broker_order_id, $4 reason)
-- The broker's events may have moved the intent on already (working, filled) before the answer
-- to the send is written: never move it back.
UPDATE order_intents
SET state = CASE WHEN state IN ('pending', 'unknown') THEN $2 ELSE state END, broker_order_id = COALESCE($3, broker_order_id), reason = COALESCE($4, reason),
    sent_at = COALESCE(sent_at, now()), updated_at = now()
WHERE id = $1;

-- name: intents.set_state($1 id, $2 state, $3 broker_order_id, $4 reason)
-- Reconciliation's verdict on an open intent: never over a final state written meanwhile (the
-- mirror's "filled" during the lookup's round trip became "working" for good). Its signal's
-- ``orders`` is counted again, as the intents that reached the broker, when this intent leaves
-- 'pending' or 'unknown' for such a state (its send's answer was lost: the outcome's count left
-- it out and said "orders 0" for an order found filled; mirror.write_batch does the same for
-- the ones it moves), and on any move of a signal settled as interrupted
-- (signals.settle_interrupted), whose orders the process that died never counted (also when
-- the mirror moved this one first). A signal still being handled ('received') is left to its
-- outcome, which writes the count. The intent is locked first (as the mirror's batch and
-- intents.finish_many lock intents before their signals), so the state it leaves is the latest.
WITH before AS MATERIALIZED (
    SELECT id, signal_id, state FROM order_intents WHERE id = $1 FOR UPDATE
), moved AS (
    UPDATE order_intents i
    SET state = $2, broker_order_id = COALESCE($3, i.broker_order_id),
        reason = COALESCE($4, i.reason), updated_at = now()
    FROM before b
    WHERE i.id = b.id AND b.state IN ('pending', 'sent', 'unknown')
    RETURNING i.id, i.state
)
UPDATE signals s
SET orders = (SELECT count(*) FROM order_intents i LEFT JOIN moved m ON m.id = i.id
              WHERE i.signal_id = s.id
                AND coalesce(m.state, i.state) IN ('sent', 'working', 'filled', 'cancelled',
                                                   'done'))
FROM before b
WHERE s.id = b.signal_id AND s.verdict <> 'received'
  AND (s.reason = 'interrupted: the daemon stopped while handling this signal'
       OR (b.state IN ('pending', 'unknown')
           AND $2 IN ('sent', 'working', 'filled', 'cancelled', 'done')));

-- name: intents.open_older_than($1 before)
SELECT i.id, i.signal_id, i.trader_id, i.sub_account_id, i.cl_ord_id, i.step, i.kind, i.symbol,
       i.state, i.broker_order_id, i.created_at, i.expires_at, s.account_id,
       s.broker_account_id, a.env
FROM order_intents i
JOIN sub_accounts s ON s.id = i.sub_account_id
JOIN accounts a ON a.id = s.account_id
WHERE i.state IN ('pending', 'sent', 'unknown') AND i.created_at < $1
ORDER BY i.id;

-- name: intents.open_sub_accounts()
-- The sub-accounts with an intent whose outcome is still open: their logins need a session for
-- reconciliation to look it up, whether a trader still links them or not.
SELECT DISTINCT sub_account_id FROM order_intents
WHERE state IN ('pending', 'sent', 'unknown');

-- name: intents.by_signal($1 signal_id)
SELECT id, signal_id, trader_id, sub_account_id, cl_ord_id, step, kind, symbol, side, qty,
       request, state, broker_order_id, reason, created_at, expires_at, sent_at
FROM order_intents WHERE signal_id = $1 ORDER BY sub_account_id, step;

-- name: intents.by_cl_ord_id($1 cl_ord_id)
SELECT id FROM order_intents WHERE cl_ord_id = $1;

-- name: intents.last_toucher($1 sub_account_ids, $2 symbol)
-- Of these sub-account rows (one account at the broker, named by two users' logins), the one
-- whose orders last filled in the contract, and that intent's trader: whose SL protects it.
-- Told by the latest fill the mirror stored and the intent behind its order, not by the
-- intents' states: an order's Filled state may come in a later batch than its fill, and the
-- earlier alert of the other user, filled already, gave its trader's stop to the position.
-- Only orders placed: a rejected or expired alert of the other user's, a limit of theirs still
-- working or cancelled unfilled, or a cancel, made that user's trader (stop loss off) the one
-- that protects a position it never opened. With no fill stored (lost with an earlier
-- session's lists), the intent filled last, else the latest that may have reached the broker.
SELECT sub_account_id, trader_id FROM (
    (SELECT i.sub_account_id, i.trader_id, 0 AS rank
     FROM fills f
     JOIN orders o ON o.sub_account_id = f.sub_account_id AND o.broker_order_id = f.broker_order_id
     JOIN order_intents i ON i.id = o.intent_id
     WHERE f.sub_account_id = ANY($1::bigint[]) AND f.symbol = $2
       AND i.sub_account_id = ANY($1::bigint[]) AND i.trader_id IS NOT NULL
     ORDER BY f.broker_fill_id DESC LIMIT 1)
    UNION ALL
    (SELECT sub_account_id, trader_id, 1 AS rank FROM order_intents
     WHERE sub_account_id = ANY($1::bigint[]) AND symbol = $2 AND trader_id IS NOT NULL
       AND kind IN ('order', 'oco', 'oso', 'strategy')
       AND state NOT IN ('pending', 'rejected', 'expired')
     ORDER BY state = 'filled' DESC, id DESC LIMIT 1)
) found ORDER BY rank LIMIT 1;

-- name: intents.finish_many($1 ids, $2 outcomes: a JSON array of intents.Outcome, $3 signal_id or NULL, $4 verdict, $5 filter, $6 reason, $7 orders, $8 detail, $9 http_status)
-- The send outcomes of some intents in one statement and, given a signal id, that signal's verdict
-- with them (the webhook's one write after the broker answered: one round trip). Like mark_sent,
-- an intent the broker's events already moved on (working, filled) keeps its state. The rows are
-- locked in id order first, as mirror.write_batch does, so the two never deadlock.
--
-- ``orders`` counts, beyond the caller's own ($7), the signal's intents the mirror already moved
-- to a state that means they reached the broker: an order whose answer was lost (unknown to the
-- caller) but whose events came before this write was left out, and the mirror recounts only
-- signals whose outcome is written, so "orders 0" stayed on a signal whose order filled.
WITH outcomes AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset($2::jsonb)
        AS u (intent_id bigint, state text, broker_order_id bigint, reason text, sent boolean)
), target AS MATERIALIZED (
    -- with the signal's other intents: a locking read returns their latest committed state
    -- (the statement's snapshot may predate a mirror batch that moved one), and waits for a
    -- batch moving one now
    SELECT id, signal_id, state FROM order_intents
    WHERE id = ANY($1::bigint[]) OR signal_id = $3::bigint
    ORDER BY id FOR UPDATE
), finished AS (
    UPDATE order_intents i
    SET state = CASE WHEN i.state IN ('pending', 'unknown') THEN u.state ELSE i.state END,
        broker_order_id = COALESCE(u.broker_order_id, i.broker_order_id),
        reason = COALESCE(u.reason, i.reason),
        sent_at = CASE WHEN u.sent THEN COALESCE(i.sent_at, now()) ELSE i.sent_at END,
        updated_at = now()
    FROM outcomes u
    JOIN target t ON t.id = u.intent_id
    WHERE i.id = u.intent_id
    RETURNING 1
)
-- The detail is merged into what the claim stored (the filters' counts): an outcome written on
-- an error path carries only the error, and must not erase what a restart rebuilds counts from.
-- (The count reads the intents as ``target`` locked them, referenced here so that they are
-- locked before the signal's row; this statement's own updates are taken from ``outcomes``.)
UPDATE signals
SET verdict = $4, filter = $5, reason = $6,
    orders = GREATEST($7, (
        SELECT count(*) FROM target t LEFT JOIN outcomes u ON u.intent_id = t.id
        WHERE t.signal_id = $3::bigint
          AND CASE WHEN t.state IN ('pending', 'unknown') THEN coalesce(u.state, t.state)
                   ELSE t.state END IN ('sent', 'working', 'filled', 'cancelled', 'done'))),
    detail = CASE WHEN $8::jsonb IS NULL THEN detail ELSE COALESCE(detail, '{}') || $8::jsonb END,
    http_status = $9
WHERE id = $3::bigint;

-- name: intents.set_requests($1 changes: a JSON array of {intent_id, request, qty})
-- A step priced again before it is sent (a DCA add's exits, from the broker's average once the
-- add shows): the intent records what is sent. Only while it is still pending (not sent yet).
UPDATE order_intents i
SET request = u.request, qty = u.qty, updated_at = now()
FROM jsonb_to_recordset($1::jsonb) AS u (intent_id bigint, request jsonb, qty integer)
WHERE i.id = u.intent_id AND i.state = 'pending';
