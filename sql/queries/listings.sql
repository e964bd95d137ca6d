-- Read-only listings for the CLI (orders, positions, trades), filtered by owner and login.
-- Only jtrades/store/listings.py runs these. Each row carries its owner's time zone: the CLI
-- shows its times there (DESIGN §4).

-- name: listings.intents($1 user name or NULL, $2 account label or NULL, $3 since or NULL, $4 limit)
SELECT i.id, i.created_at, u.name AS user_name, a.label AS account, s.name AS sub_account,
       i.signal_id, i.cl_ord_id, i.kind, i.symbol, i.side, i.qty, i.state, i.broker_order_id,
       i.reason, u.timezone
FROM order_intents i
JOIN sub_accounts s ON s.id = i.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN users u ON u.id = a.user_id
WHERE ($1::text IS NULL OR lower(u.name) = lower($1))
  AND ($2::text IS NULL OR lower(a.label) = lower($2))
  AND ($3::timestamptz IS NULL OR i.created_at >= $3)
ORDER BY i.id DESC
LIMIT $4;

-- name: listings.broker_orders($1 user name or NULL, $2 account label or NULL, $3 since or NULL, $4 limit)
SELECT o.broker_order_id, o.updated_at, u.name AS user_name, a.label AS account,
       s.name AS sub_account, o.cl_ord_id, o.symbol, o.side, o.qty, o.order_type, o.price,
       o.stop_price, o.status, u.timezone
FROM orders o
JOIN sub_accounts s ON s.id = o.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN users u ON u.id = a.user_id
WHERE ($1::text IS NULL OR lower(u.name) = lower($1))
  AND ($2::text IS NULL OR lower(a.label) = lower($2))
  AND ($3::timestamptz IS NULL OR o.updated_at >= $3)
ORDER BY o.updated_at DESC, o.id DESC
LIMIT $4;

-- name: listings.positions($1 user name or NULL, $2 account label or NULL, $3 include flat)
SELECT u.name AS user_name, a.label AS account, s.name AS sub_account, p.symbol, p.net_pos,
       p.net_price, p.updated_at, u.timezone
FROM positions p
JOIN sub_accounts s ON s.id = p.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN users u ON u.id = a.user_id
WHERE ($1::text IS NULL OR lower(u.name) = lower($1))
  AND ($2::text IS NULL OR lower(a.label) = lower($2))
  AND ($3 OR p.net_pos <> 0)
ORDER BY lower(u.name), lower(a.label), s.name, p.symbol;

-- name: listings.trades($1 user name or NULL, $2 account label or NULL, $3 since or NULL, $4 limit)
SELECT t.id, t.closed_at, u.name AS user_name, a.label AS account, s.name AS sub_account,
       t.symbol, t.side, t.qty, t.entry_price, t.exit_price, t.pnl, t.opened_at, u.timezone
FROM trades t
JOIN sub_accounts s ON s.id = t.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN users u ON u.id = a.user_id
WHERE ($1::text IS NULL OR lower(u.name) = lower($1))
  AND ($2::text IS NULL OR lower(a.label) = lower($2))
  AND ($3::timestamptz IS NULL OR t.closed_at >= $3)
ORDER BY t.closed_at DESC, t.id DESC
LIMIT $4;

-- name: listings.names_exist($1 user name or NULL, $2 account label or NULL, $3 recorder name or NULL)
-- A listing's filter names, each true when it exists or was not given: a mistyped name is an
-- error, not an empty listing (an existing name with nothing to list stays an empty listing).
SELECT ($1::text IS NULL OR EXISTS (SELECT 1 FROM users WHERE lower(name) = lower($1))) AS user,
       ($2::text IS NULL OR EXISTS (SELECT 1 FROM accounts WHERE lower(label) = lower($2)))
           AS account,
       ($3::text IS NULL OR EXISTS (SELECT 1 FROM recorders WHERE lower(name) = lower($3)))
           AS recorder;

-- name: listings.signal_zones($1 signal ids)
-- The time zone of each signal's owner (its recorder's); a signal with no recorder has none.
SELECT s.id, u.timezone
FROM signals s
JOIN recorders r ON r.id = s.recorder_id
JOIN users u ON u.id = r.user_id
WHERE s.id = ANY($1::bigint[]);
