-- The broker's view mirrored into Postgres: what the reconciler's mirror writes.

-- name: mirror.write_batch($1 intents, $2 orders, $3 positions, $4 fills: JSON arrays of objects, see store/mirror.py)
-- One batch of one login's events in one statement (one round trip, one transaction unless the
-- caller holds one): the intents behind the orders move to the orders' states (never out of a
-- final state), the orders and positions are upserted (one row per key: their latest state),
-- the fills inserted; returns the fills that are new (a replayed fill is not).
--
-- An order's event moves an intent, and links the order's row to it, only when the intent is of
-- the same account at the broker: the clOrdId alone is unique within this database only (another
-- jtrades on the login, or a database rebuilt the same day, makes the same ids for its orders).
-- The same account is the event's sub-account row, or (not paper: a paper login is its own
-- broker, its account ids are chosen by hand) a row of the same env and broker account id under
-- another login: two users who added one Tradovate login each have a row for its account, and
-- an event comes through both. The two rows are looked up (by primary key, a scalar subquery
-- per row: an EXISTS here was planned as a hash of every pair of rows) only when the event's
-- row is not the intent's own; the common case costs the cl_ord_id lookup, as before.
--
-- An intent that leaves 'pending' or 'unknown' for a state that means its order reached the
-- broker (its send's answer was lost, or the daemon stopped before writing it) is counted on
-- its signal's ``orders`` again: the count the outcome wrote left it out, and said "orders 0"
-- for an order that filled. Its signal is returned, and counted by a statement of its own
-- (signals.recount_orders), whose snapshot holds an outcome committed while this one waited
-- for its locks. The common batch moves none of these.
--
-- The commit waits for its WAL flush (synchronous_commit on for this transaction, whatever
-- the server's default). It did not, on the grounds that the reconnect's snapshot replays what
-- a Postgres crash loses; but the replayed fill was measured against a position in memory that
-- already held it, and the crash lost its trade for good (trades list, and after a restart the
-- daily loss). Measured: no cost in throughput (127.2 and 139.5 alerts/s against 132.7 and
-- 136.9, interleaved).
--
-- Every statement that writes several intents locks them first in id order (here and in
-- intents.finish_many, which also writes the webhook's verdict): the mirror's batch and a
-- signal's outcomes touch the same intents, and in any other order they can deadlock. Both
-- (and intents.set_state) lock the intents before their signals' rows.
WITH async_commit AS (
    SELECT set_config('synchronous_commit', 'on', true)
), matched AS MATERIALIZED (
    -- each event's intent by one index lookup (the LIMIT keeps the planner from joining all of
    -- order_intents by hash: a scan of the whole history per batch, 8 ms at 30,000 intents)
    SELECT m.id, u.state, u.broker_order_id, u.reason
    FROM jsonb_to_recordset($1::jsonb)
         AS u (sub_account_id bigint, cl_ord_id text, state text, broker_order_id bigint,
               reason text)
    CROSS JOIN LATERAL (
        SELECT i.id FROM order_intents i
        WHERE i.cl_ord_id = u.cl_ord_id
          AND (i.sub_account_id = u.sub_account_id
               OR (SELECT su.broker_account_id = si.broker_account_id AND au.env = ai.env
                          AND ai.env <> 'paper'
                   FROM sub_accounts si JOIN accounts ai ON ai.id = si.account_id,
                        sub_accounts su JOIN accounts au ON au.id = su.account_id
                   WHERE si.id = i.sub_account_id AND su.id = u.sub_account_id))
        LIMIT 1  -- cl_ord_id is unique
    ) m
), target AS MATERIALIZED (
    SELECT i.id, i.signal_id, i.state AS was, m.state, m.broker_order_id, m.reason
    FROM matched m JOIN order_intents i ON i.id = m.id
    WHERE i.state NOT IN ('filled', 'rejected', 'cancelled', 'expired', 'done')
       -- the broker's reason may come after the rejection itself (a commandReport)
       OR (i.state = 'rejected' AND m.state = 'rejected' AND i.reason IS NULL
           AND m.reason IS NOT NULL)
    ORDER BY i.id
    FOR UPDATE OF i
), synced AS (
    UPDATE order_intents i
    SET state = t.state, broker_order_id = COALESCE(i.broker_order_id, t.broker_order_id),
        reason = COALESCE(i.reason, t.reason), updated_at = now()
    FROM target t
    WHERE i.id = t.id
      AND (i.state NOT IN ('filled', 'rejected', 'cancelled', 'expired', 'done')
           OR (i.state = 'rejected' AND t.state = 'rejected' AND i.reason IS NULL))
), upserted_orders AS (
    INSERT INTO orders (sub_account_id, broker_order_id, intent_id, cl_ord_id, symbol, side, qty,
                        order_type, price, stop_price, status, parent_id, oco_id)
    SELECT u.sub_account_id, u.broker_order_id, i.id, u.cl_ord_id, u.symbol, u.side, u.qty,
           u.order_type, u.price, u.stop_price, u.status, u.parent_id, u.oco_id
    FROM jsonb_to_recordset($2::jsonb)
         AS u (sub_account_id bigint, broker_order_id bigint, cl_ord_id text, symbol text,
               side text, qty integer, order_type text, price numeric, stop_price numeric,
               status text, parent_id bigint, oco_id bigint)
    -- the intent of the same account at the broker, as in matched (one index lookup each)
    LEFT JOIN LATERAL (
        SELECT i.id FROM order_intents i
        WHERE i.cl_ord_id = u.cl_ord_id
          AND (i.sub_account_id = u.sub_account_id
               OR (SELECT su.broker_account_id = si.broker_account_id AND au.env = ai.env
                          AND ai.env <> 'paper'
                   FROM sub_accounts si JOIN accounts ai ON ai.id = si.account_id,
                        sub_accounts su JOIN accounts au ON au.id = su.account_id
                   WHERE si.id = i.sub_account_id AND su.id = u.sub_account_id))
        LIMIT 1
    ) i ON true
    WHERE true
    ON CONFLICT (sub_account_id, broker_order_id) DO UPDATE
    SET intent_id = COALESCE(EXCLUDED.intent_id, orders.intent_id),
        cl_ord_id = COALESCE(EXCLUDED.cl_ord_id, orders.cl_ord_id),
        -- written before its contract was named (an order placed by hand in a new month): the
        -- name comes with a later event, and kept empty the row showed none for good
        symbol = COALESCE(NULLIF(EXCLUDED.symbol, ''), orders.symbol),
        qty = EXCLUDED.qty, order_type = EXCLUDED.order_type, price = EXCLUDED.price,
        stop_price = EXCLUDED.stop_price, status = EXCLUDED.status,
        parent_id = COALESCE(EXCLUDED.parent_id, orders.parent_id),
        oco_id = COALESCE(EXCLUDED.oco_id, orders.oco_id),
        -- a replay (a restart, a reconnect) writes every order again: "updated" is when it
        -- changed, not when it was last seen (every order showed the restart's time)
        updated_at = CASE
            WHEN (orders.qty, orders.order_type, orders.price, orders.stop_price, orders.status)
                 IS DISTINCT FROM (EXCLUDED.qty, EXCLUDED.order_type, EXCLUDED.price,
                                   EXCLUDED.stop_price, EXCLUDED.status)
            THEN now() ELSE orders.updated_at END
), upserted_positions AS (
    INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)
    SELECT * FROM jsonb_to_recordset($3::jsonb)
        AS u (sub_account_id bigint, symbol text, net_pos integer, net_price numeric)
    ON CONFLICT (sub_account_id, symbol) DO UPDATE
    SET net_pos = EXCLUDED.net_pos, net_price = EXCLUDED.net_price,
        updated_at = CASE
            WHEN (positions.net_pos, positions.net_price)
                 IS DISTINCT FROM (EXCLUDED.net_pos, EXCLUDED.net_price)
            THEN now() ELSE positions.updated_at END
), new_fills AS (
    INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty, price,
                       filled_at)
    SELECT * FROM jsonb_to_recordset($4::jsonb)
        AS u (sub_account_id bigint, broker_fill_id bigint, broker_order_id bigint, symbol text,
              side text, qty integer, price numeric, filled_at timestamptz)
    ON CONFLICT (sub_account_id, broker_fill_id) DO NOTHING
    RETURNING sub_account_id, broker_fill_id
)
-- async_commit on the left of an outer join: it runs even when no fill is new. Then the
-- signals whose intents this batch moved out of 'pending' or 'unknown' to a state that means
-- they reached the broker: the caller counts their orders again (signals.recount_orders).
SELECT f.sub_account_id, f.broker_fill_id, NULL::bigint AS recount
FROM async_commit LEFT JOIN new_fills f ON true
UNION ALL
SELECT DISTINCT NULL::bigint, NULL::bigint, signal_id FROM target
WHERE signal_id IS NOT NULL AND was IN ('pending', 'unknown')
  AND state IN ('sent', 'working', 'filled', 'cancelled', 'done');

-- name: mirror.insert_trades($1 trades: a JSON array of objects, see store/mirror.py)
-- The round trips a batch of new fills closed, in the batch's transaction.
INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl, opened_at,
                    closed_at)
SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS u (sub_account_id bigint, symbol text, side text, qty integer, entry_price numeric,
          exit_price numeric, pnl numeric, opened_at timestamptz, closed_at timestamptz);

-- name: mirror.end_vanished($1 sub_account_id, $2 the broker order ids the view holds: bigint[])
-- A login's whole view, replayed, holds every order still at the broker: an open order of this
-- sub-account it does not hold ended while no one was listening (the trading day changed while
-- the daemon was down: the next snapshot lists only working orders). Filled or cancelled is not
-- known: 'Unknown', no longer shown as working. Returns how many.
WITH ended AS (
    UPDATE orders SET status = 'Unknown', updated_at = now()
    WHERE sub_account_id = $1
      AND status IN ('PendingNew', 'Working', 'Suspended', 'PendingCancel', 'PendingReplace')
      AND broker_order_id <> ALL($2::bigint[])
    RETURNING 1
)
SELECT count(*) FROM ended;
