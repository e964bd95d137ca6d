-- Evidence of a stop the daemon owes an open position (engine.owed_stop). Only
-- jtrades/store/owed_stops.py runs these.

-- name: owed_stops.evidence($1 sub_account_ids: the rows of one account at the broker, $2 symbol)
-- The intents of the last plan on the contract that may have reached the broker (one signal's,
-- or one protection's: its clOrdId prefix), newest first, each with who made the latest fill
-- stored for the contract. "May have reached": not refused and not expired, or an expired
-- cancel, liquidation or modify whose expiry does not say it was never sent (reconciliation
-- cannot confirm those: ``reconcile.resolve_intent``). A pending or unknown intent is in doubt and
-- counts as reached: the plan it belongs to is the last one until reconciliation settles it.
-- The latest fill is the daemon's when its order (or, for a bracket, its parent) carries one of
-- the daemon's clOrdIds or an intent; a fill by hand, or one whose order is not stored, is not.
-- No row: no intent on the contract may have reached the broker.
WITH last AS (
    SELECT id, signal_id, regexp_replace(cl_ord_id, '-[^-]*$', '') AS prefix
    FROM order_intents
    WHERE sub_account_id = ANY($1::bigint[]) AND symbol = $2
      AND (state NOT IN ('expired', 'rejected')
           OR (state = 'expired' AND kind IN ('cancel', 'liquidate', 'modify')
               AND coalesce(reason, '') NOT LIKE 'not sent%'))
    ORDER BY id DESC  -- the order they were written in (not created_at: a clock can step back)
    LIMIT 1
), latest_fill AS (
    SELECT coalesce(o.intent_id IS NOT NULL OR o.cl_ord_id LIKE 'jt-%'
                    OR p.intent_id IS NOT NULL OR p.cl_ord_id LIKE 'jt-%', false) AS ours
    FROM fills f
    LEFT JOIN orders o
           ON o.sub_account_id = f.sub_account_id AND o.broker_order_id = f.broker_order_id
    LEFT JOIN orders p ON p.sub_account_id = o.sub_account_id AND p.broker_order_id = o.parent_id
    WHERE f.sub_account_id = ANY($1::bigint[]) AND f.symbol = $2
    ORDER BY f.broker_fill_id DESC, 1 DESC
    LIMIT 1
)
SELECT i.id, i.cl_ord_id, i.kind, i.state, i.side, i.request,
       (SELECT ours FROM latest_fill) AS fill_ours
FROM last l
JOIN order_intents i
  ON i.sub_account_id = ANY($1::bigint[]) AND i.symbol = $2
 AND CASE WHEN l.signal_id IS NOT NULL THEN i.signal_id = l.signal_id
          ELSE i.signal_id IS NULL
               AND left(i.cl_ord_id, length(l.prefix) + 1) = l.prefix || '-' END
ORDER BY i.id DESC;
