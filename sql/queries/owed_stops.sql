-- Evidence of a stop the daemon owes an open position (engine.owed_stop). Only
-- jtrades/store/owed_stops.py runs these.

-- name: owed_stops.evidence($1 sub_account_ids: the rows of one account at the broker, $2 symbol)
-- The intents of the last plan on the contract that may have reached the broker (one signal's,
-- or one protection's: its clOrdId prefix), newest first, each cancel with the stored row of the
-- order it names (its type and status), each order or OCO closed 'done' with whether the broker
-- is known to have had it, and each with who made the latest fill stored for the contract.
-- "May have reached": not refused and not expired, or an expired cancel or modify whose expiry
-- does not say it was never sent (reconciliation cannot confirm those:
-- ``reconcile.resolve_intent``; "says" is the reason's prefix, ``engine.unsent.NOT_SENT``, which
-- tests/unit/test_unsent.py holds equal to the literal below). A pending or unknown intent is
-- in doubt and counts as reached: the plan it belongs to is the last one until reconciliation
-- settles it. An expired liquidation does not count (``engine.owed_stop``: had it reached the
-- broker the position would be flat). Nor does a plain order (not a stop): an add or a reduce
-- that cancelled and placed no exit left the position's protection as it was, so the plan
-- before it still decides; a plan is passed over only when none of its intents counts. An
-- entry that opened a trade (its note, ``engine.plan_context.OPENING_ENTRY``) does count: the
-- trade before it is closed, whatever became of what closed it. A protection's cancel does not
-- when the protection wrote no stop step after it: it placed nothing (``engine.owed_stop``),
-- and the stop owed before it is still owed.
-- The latest fill is the daemon's when its order (or, for a bracket, its parent) carries one of
-- the daemon's clOrdIds or an intent that is not a liquidation (one that filled flattened the
-- position: what is held since was opened after it); a fill by hand, or one whose order is not
-- stored, is not. The fills of the plain orders passed over are passed over too: a fill by hand
-- before them still tells that a person traded the contract since the plan.
-- No row: no intent on the contract may have reached the broker.
--
-- Cost: this position's own history only, whatever the other accounts wrote. Each row of the
-- account is read on its own (unnest) through order_intents_position_idx and
-- fills_position_idx, newest first: the last plan is the first intent that may have reached the
-- broker walking back from the newest, past the plain orders after it; the plan's steps are the
-- intents since the one before it that is another plan's (a plan's intents on an account are
-- written under the account's dispatcher lock: no other plan's come between them); the latest
-- fill, one index entry per row and per fill passed over. Whether the broker had an order closed
-- 'done' (for such a step of the last plan only: one closed after the trading day changed) is
-- one probe of orders_cl_ord_idx per row of the account and clOrdId. A protection's cancel
-- looks for its stop step among the intents after it on the position (already walked).
-- It runs for every naked position of a trader without a stop loss on every pass, under that
-- lock: walked by primary key over every account's intents, it took 150 ms at 300,000 of them.
WITH subs AS (
    SELECT DISTINCT unnest($1::bigint[]) AS sub
), last AS MATERIALIZED (
    SELECT r.id, r.signal_id, regexp_replace(r.cl_ord_id, '-[^-]*$', '') AS prefix
    FROM subs
    CROSS JOIN LATERAL (
        SELECT i.id, i.signal_id, i.cl_ord_id
        FROM order_intents i
        WHERE i.sub_account_id = subs.sub AND i.symbol = $2
          AND (i.state NOT IN ('expired', 'rejected')
               OR (i.state = 'expired' AND i.kind IN ('cancel', 'modify')
                   AND coalesce(i.reason, '') NOT LIKE 'not sent%'))
          AND NOT (i.kind = 'order'
                   AND coalesce(i.request -> 'request' ->> 'order_type', '')
                       NOT IN ('Stop', 'StopLimit', 'TrailingStop')
                   -- an entry that opened a trade (from flat, or after its plan's liquidation)
                   -- is no plain order passed over: engine.plan_context.OPENING_ENTRY
                   AND coalesce(i.request ->> 'note', '') <> 'entry without TP/SL')
          -- a protection's cancel, when the protection wrote no stop step after it (its cancel
          -- showed late: it placed nothing): passed over, the stop is still owed
          AND NOT (i.kind = 'cancel' AND starts_with(i.cl_ord_id, 'jt-p-')
                   AND NOT EXISTS (
                       SELECT 1
                       FROM order_intents s
                       WHERE s.sub_account_id = i.sub_account_id AND s.symbol = $2
                         AND s.id > i.id
                         AND starts_with(s.cl_ord_id,
                                         regexp_replace(i.cl_ord_id, '-[^-]*$', '') || '-')
                         AND ((s.kind = 'order'
                               AND s.request -> 'request' ->> 'order_type'
                                   IN ('Stop', 'StopLimit', 'TrailingStop'))
                              OR (s.kind = 'oco'
                                  AND (s.request -> 'request' -> 'first' ->> 'order_type'
                                       IN ('Stop', 'StopLimit', 'TrailingStop')
                                       OR s.request -> 'request' -> 'second' ->> 'order_type'
                                          IN ('Stop', 'StopLimit', 'TrailingStop'))))))
        ORDER BY i.id DESC  -- the order they were written in (not created_at: a clock can step back)
        LIMIT 1
    ) r
    ORDER BY r.id DESC
    LIMIT 1
), plan_start AS MATERIALIZED (
    -- the newest intent on the position before the plan that is not the plan's (0: none)
    SELECT coalesce(max(b.id), 0) AS after
    FROM last l
    CROSS JOIN subs
    CROSS JOIN LATERAL (
        SELECT i.id
        FROM order_intents i
        WHERE i.sub_account_id = subs.sub AND i.symbol = $2 AND i.id < l.id
          AND NOT (i.signal_id IS NOT DISTINCT FROM l.signal_id
                   AND (l.signal_id IS NOT NULL OR starts_with(i.cl_ord_id, l.prefix || '-')))
        ORDER BY i.id DESC
        LIMIT 1
    ) b
), plan AS MATERIALIZED (
    SELECT i.id, i.cl_ord_id, i.kind, i.state, i.side, i.request, i.reason, i.broker_order_id
    FROM last l
    CROSS JOIN plan_start s
    CROSS JOIN subs
    CROSS JOIN LATERAL (
        SELECT *
        FROM order_intents i
        WHERE i.sub_account_id = subs.sub AND i.symbol = $2 AND i.id > s.after
          AND i.signal_id IS NOT DISTINCT FROM l.signal_id
          AND (l.signal_id IS NOT NULL OR starts_with(i.cl_ord_id, l.prefix || '-'))
        -- kept a subquery run per row (an ORDER BY is never pulled up into the join): pulled
        -- up, the generic plan, which cannot know where the plan starts, read every intent
        -- since it by primary key, whatever their account
        ORDER BY i.id DESC
    ) i
), latest_fill AS (
    SELECT coalesce((o.intent_id IS NOT NULL AND o.kind IS DISTINCT FROM 'liquidate')
                    OR (o.intent_id IS NULL AND o.cl_ord_id LIKE 'jt-%')
                    OR p.intent_id IS NOT NULL OR p.cl_ord_id LIKE 'jt-%', false) AS ours
    FROM subs
    CROSS JOIN LATERAL (
        SELECT f.broker_fill_id, o.intent_id, o.cl_ord_id, o.sub_account_id, o.parent_id, oi.kind
        FROM fills f
        LEFT JOIN orders o
               ON o.sub_account_id = f.sub_account_id AND o.broker_order_id = f.broker_order_id
        LEFT JOIN order_intents oi ON oi.id = o.intent_id
        WHERE f.sub_account_id = subs.sub AND f.symbol = $2
          -- a plain order written after the plan: passed over
          AND NOT coalesce(oi.kind = 'order' AND oi.id > (SELECT max(id) FROM plan), false)
        ORDER BY f.broker_fill_id DESC
        LIMIT 1
    ) o
    LEFT JOIN orders p ON p.sub_account_id = o.sub_account_id AND p.broker_order_id = o.parent_id
    ORDER BY o.broker_fill_id DESC, 1 DESC
    LIMIT 1
)
SELECT i.id, i.cl_ord_id, i.kind, i.state, i.side, i.request, i.reason,
       t.order_type AS target_type, t.status AS target_status,
       -- an order closed 'done' the broker is known to have had: its id, or a stored row
       -- carrying its clOrdId (an OCO's second leg: with a 'b'). A row linked to the intent
       -- carries its clOrdId too: the mirror links an order to the intent of the same clOrdId
       -- only (mirror.sql), so the clOrdId alone finds it, through orders_cl_ord_idx
       CASE WHEN i.state <> 'done' OR i.kind NOT IN ('order', 'oco') THEN NULL
            WHEN i.broker_order_id IS NOT NULL THEN true
            ELSE EXISTS (SELECT 1 FROM orders o
                         WHERE o.sub_account_id = ANY($1::bigint[])
                           AND o.cl_ord_id IN (i.cl_ord_id, i.cl_ord_id || 'b')
                           AND o.symbol = $2) END
           AS order_known,
       (SELECT ours FROM latest_fill) AS fill_ours
FROM plan i
-- a cancel's order, as the mirror last stored it (a row of the same account at the broker)
LEFT JOIN LATERAL (
    SELECT o.order_type, o.status
    FROM orders o
    WHERE o.sub_account_id = ANY($1::bigint[])
      AND o.broker_order_id = CASE WHEN jsonb_typeof(i.request -> 'cancel_order_id') = 'number'
                                   THEN (i.request ->> 'cancel_order_id')::bigint END
    ORDER BY o.status = 'Canceled' DESC, o.status = 'Unknown' DESC
    LIMIT 1
) t ON i.kind = 'cancel'
ORDER BY i.id DESC;
