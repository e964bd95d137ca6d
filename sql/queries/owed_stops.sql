-- Evidence of a stop the daemon owes an open position (engine.owed_stop). Only
-- jtrades/store/owed_stops.py runs these.

-- name: owed_stops.evidence($1 sub_account_ids: the rows of one account at the broker, $2 symbol)
-- The intents of the last plan on the contract that may have reached the broker (one signal's,
-- or one protection's: its clOrdId prefix), newest first, each cancel with the stored row of the
-- order it names (its type and status), and each with who made the latest fill stored for the
-- contract. "May have reached": not refused and not expired, or an expired cancel, liquidation
-- or modify whose expiry does not say it was never sent (reconciliation cannot confirm those:
-- ``reconcile.resolve_intent``; "says" is the reason's prefix, ``engine.unsent.NOT_SENT``, which
-- tests/unit/test_unsent.py holds equal to the literal below). A pending or unknown intent is
-- in doubt and counts as reached: the plan it belongs to is the last one until reconciliation
-- settles it.
-- The latest fill is the daemon's when its order (or, for a bracket, its parent) carries one of
-- the daemon's clOrdIds or an intent; a fill by hand, or one whose order is not stored, is not.
-- No row: no intent on the contract may have reached the broker.
--
-- Cost: this position's own history only, whatever the other accounts wrote. Each row of the
-- account is read on its own (unnest) through order_intents_position_idx and
-- fills_position_idx, newest first: the last plan is the first intent that may have reached the
-- broker walking back from the newest; the plan's steps are the intents since the one before it
-- that is another plan's (a plan's intents on an account are written under the account's
-- dispatcher lock: no other plan's come between them); the latest fill, one index entry per row.
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
               OR (i.state = 'expired' AND i.kind IN ('cancel', 'liquidate', 'modify')
                   AND coalesce(i.reason, '') NOT LIKE 'not sent%'))
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
), latest_fill AS (
    SELECT coalesce(o.intent_id IS NOT NULL OR o.cl_ord_id LIKE 'jt-%'
                    OR p.intent_id IS NOT NULL OR p.cl_ord_id LIKE 'jt-%', false) AS ours
    FROM subs
    CROSS JOIN LATERAL (
        SELECT f.sub_account_id, f.broker_fill_id, f.broker_order_id
        FROM fills f
        WHERE f.sub_account_id = subs.sub AND f.symbol = $2
        ORDER BY f.broker_fill_id DESC
        LIMIT 1
    ) f
    LEFT JOIN orders o
           ON o.sub_account_id = f.sub_account_id AND o.broker_order_id = f.broker_order_id
    LEFT JOIN orders p ON p.sub_account_id = o.sub_account_id AND p.broker_order_id = o.parent_id
    ORDER BY f.broker_fill_id DESC, 1 DESC
    LIMIT 1
)
SELECT i.id, i.cl_ord_id, i.kind, i.state, i.side, i.request, i.reason,
       t.order_type AS target_type, t.status AS target_status,
       (SELECT ours FROM latest_fill) AS fill_ours
FROM last l
CROSS JOIN plan_start s
CROSS JOIN subs
CROSS JOIN LATERAL (
    SELECT *
    FROM order_intents i
    WHERE i.sub_account_id = subs.sub AND i.symbol = $2 AND i.id > s.after
      AND i.signal_id IS NOT DISTINCT FROM l.signal_id
      AND (l.signal_id IS NOT NULL OR starts_with(i.cl_ord_id, l.prefix || '-'))
    -- kept a subquery run per row (an ORDER BY is never pulled up into the join): pulled up,
    -- the generic plan, which cannot know where the plan starts, read every intent since it
    -- by primary key, whatever their account
    ORDER BY i.id DESC
) i
-- a cancel's order, as the mirror last stored it (a row of the same account at the broker)
LEFT JOIN LATERAL (
    SELECT o.order_type, o.status
    FROM orders o
    WHERE o.sub_account_id = ANY($1::bigint[])
      AND o.broker_order_id = CASE WHEN jsonb_typeof(i.request -> 'cancel_order_id') = 'number'
                                   THEN (i.request ->> 'cancel_order_id')::bigint END
    ORDER BY o.status = 'Canceled' DESC
    LIMIT 1
) t ON i.kind = 'cancel'
ORDER BY i.id DESC;
