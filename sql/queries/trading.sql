-- The broker's view mirrored into Postgres (orders, fills, positions, trades), the engine's
-- configuration snapshot, and the reads the filters need. Only jtrades/store/trading.py runs these.

-- name: trading.config_recorders()
SELECT r.*, u.status AS owner_status, u.timezone AS owner_timezone
FROM recorders r JOIN users u ON u.id = r.user_id;

-- name: trading.config_traders()
SELECT t.*, u.status AS owner_status, u.timezone AS owner_timezone
FROM traders t JOIN users u ON u.id = t.user_id;

-- name: trading.config_links()
SELECT ta.trader_id, ta.sub_account_id, ta.multiplier, ta.enabled,
       s.broker_account_id, s.name AS sub_name, s.active, s.halted AS sub_halted,
       a.id AS account_id, a.env, a.label, a.halted AS account_halted, a.user_id
FROM trader_accounts ta
JOIN sub_accounts s ON s.id = ta.sub_account_id
JOIN accounts a ON a.id = s.account_id;

-- name: trading.halted()
SELECT value FROM system_flags WHERE name = 'halted';

-- name: trading.config_fingerprint()
SELECT md5(concat_ws('|',
    (SELECT string_agg(id::text || ':' || updated_at::text || ':' || recording_enabled::text
                       || ':' || is_private::text, ',' ORDER BY id) FROM recorders),
    (SELECT string_agg(id::text || ':' || updated_at::text || ':' || enabled::text, ','
                       ORDER BY id) FROM traders),
    (SELECT string_agg(trader_id::text || ':' || sub_account_id::text || ':' || multiplier::text
                       || ':' || enabled::text, ',' ORDER BY trader_id, sub_account_id)
     FROM trader_accounts),
    (SELECT string_agg(id::text || ':' || status || ':' || timezone, ',' ORDER BY id) FROM users),
    (SELECT string_agg(id::text || ':' || halted::text || ':' || env, ',' ORDER BY id) FROM accounts),
    (SELECT string_agg(id::text || ':' || halted::text || ':' || active::text, ',' ORDER BY id)
     FROM sub_accounts),
    (SELECT string_agg(name || ':' || value::text || ':' || updated_at::text, ',')
     FROM system_flags)));

-- name: trading.recorder_counters($1 since)
SELECT recorder_id,
       count(*) AS signals,
       count(*) FILTER (WHERE verdict = 'accepted' AND (detail ->> 'entry')::boolean) AS entries,
       max(received_at) FILTER (WHERE verdict = 'accepted' AND (detail ->> 'entry')::boolean)
           AS last_entry_at,
       count(*) FILTER (WHERE (detail ->> 'nth_seen')::boolean) AS seen
FROM signals
WHERE received_at >= $1 AND recorder_id IS NOT NULL AND duplicate_of IS NULL
GROUP BY recorder_id;

-- name: trading.trader_entries($1 since)
-- The engine lists, on each signal's detail, the traders that counted it as an entry
-- (trader_entries) and those whose own every-Nth saw it (trader_seen).
SELECT t.trader_id::bigint AS trader_id,
       count(*) FILTER (WHERE t.kind = 'entry') AS entries,
       max(t.received_at) FILTER (WHERE t.kind = 'entry') AS last_entry_at,
       count(*) FILTER (WHERE t.kind = 'seen') AS seen
FROM (
    SELECT s.received_at, 'entry' AS kind, e.value AS trader_id
    FROM signals s, jsonb_array_elements_text(COALESCE(s.detail -> 'trader_entries', '[]')) e
    WHERE s.received_at >= $1 AND s.duplicate_of IS NULL
    UNION ALL
    SELECT s.received_at, 'seen', e.value
    FROM signals s, jsonb_array_elements_text(COALESCE(s.detail -> 'trader_seen', '[]')) e
    WHERE s.received_at >= $1 AND s.duplicate_of IS NULL
) t
GROUP BY t.trader_id;

-- name: trading.realized_today($1 since)
SELECT sub_account_id, symbol, sum(pnl) AS pnl
FROM trades WHERE closed_at >= $1 GROUP BY sub_account_id, symbol;

-- name: trading.upsert_orders($1 sub_account_ids, $2 broker_order_ids, $3 cl_ord_ids, $4 symbols, $5 sides, $6 qtys, $7 order_types, $8 prices, $9 stop_prices, $10 statuses, $11 parent_ids, $12 oco_ids)
-- A batch of the broker's orders (one row per order: its latest state) in one statement; the
-- intent behind each is found by its clOrdId.
INSERT INTO orders (sub_account_id, broker_order_id, intent_id, cl_ord_id, symbol, side, qty,
                    order_type, price, stop_price, status, parent_id, oco_id)
SELECT u.sub_account_id, u.broker_order_id, i.id, u.cl_ord_id, u.symbol, u.side, u.qty,
       u.order_type, u.price, u.stop_price, u.status, u.parent_id, u.oco_id
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::integer[],
            $7::text[], $8::numeric[], $9::numeric[], $10::text[], $11::bigint[], $12::bigint[])
     AS u (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty, order_type, price,
           stop_price, status, parent_id, oco_id)
LEFT JOIN order_intents i ON i.cl_ord_id = u.cl_ord_id
WHERE true
ON CONFLICT (sub_account_id, broker_order_id) DO UPDATE
SET intent_id = COALESCE(EXCLUDED.intent_id, orders.intent_id),
    cl_ord_id = COALESCE(EXCLUDED.cl_ord_id, orders.cl_ord_id),
    qty = EXCLUDED.qty, order_type = EXCLUDED.order_type, price = EXCLUDED.price,
    stop_price = EXCLUDED.stop_price, status = EXCLUDED.status,
    parent_id = COALESCE(EXCLUDED.parent_id, orders.parent_id),
    oco_id = COALESCE(EXCLUDED.oco_id, orders.oco_id), updated_at = now();

-- name: trading.insert_fills($1 sub_account_ids, $2 broker_fill_ids, $3 broker_order_ids, $4 symbols, $5 sides, $6 qtys, $7 prices, $8 filled_ats)
-- A batch of fills in one statement; returns the ones that are new (a replay returns nothing).
INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty, price,
                   filled_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                     $6::integer[], $7::numeric[], $8::timestamptz[])
ON CONFLICT (sub_account_id, broker_fill_id) DO NOTHING
RETURNING sub_account_id, broker_fill_id;

-- name: trading.upsert_positions($1 sub_account_ids, $2 symbols, $3 net_poses, $4 net_prices)
-- A batch of positions (one row per sub-account and contract) in one statement.
INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::numeric[])
ON CONFLICT (sub_account_id, symbol) DO UPDATE
SET net_pos = EXCLUDED.net_pos, net_price = EXCLUDED.net_price, updated_at = now();

-- name: trading.insert_trades($1 sub_account_ids, $2 symbols, $3 sides, $4 qtys, $5 entry_prices, $6 exit_prices, $7 pnls, $8 opened_ats, $9 closed_ats)
-- The round trips a batch of fills closed, in one statement.
INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl, opened_at,
                    closed_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::integer[], $5::numeric[],
                     $6::numeric[], $7::numeric[], $8::timestamptz[], $9::timestamptz[]);

-- name: trading.positions($1 sub_account_ids)
SELECT sub_account_id, symbol, net_pos, net_price, updated_at
FROM positions WHERE sub_account_id = ANY($1::bigint[]);

-- name: trading.orders_of($1 sub_account_id)
SELECT * FROM orders WHERE sub_account_id = $1 ORDER BY broker_order_id;

-- name: trading.fills_of($1 sub_account_id)
SELECT * FROM fills WHERE sub_account_id = $1 ORDER BY broker_fill_id;

-- name: trading.trades_of($1 sub_account_id)
SELECT * FROM trades WHERE sub_account_id = $1 ORDER BY id;

-- name: trading.flatten_done($1 requested_at, $2 done_at)
-- Mark a `halt --flatten` request handled, so a restart does not flatten a second time.
UPDATE system_flags
SET value = jsonb_set(value, '{flatten,done_at}', to_jsonb($2::text))
WHERE name = 'halted' AND value -> 'flatten' ->> 'requested_at' = $1;
