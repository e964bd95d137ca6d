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
       a.id AS account_id, a.env, a.label, a.halted AS account_halted, a.user_id, a.username,
       ((a.password_enc IS NOT NULL AND a.password_proven_at IS NOT NULL)
        OR a.oauth_token_enc IS NOT NULL) AS has_credential
FROM trader_accounts ta
JOIN sub_accounts s ON s.id = ta.sub_account_id
JOIN accounts a ON a.id = s.account_id;

-- name: trading.config_subs()
-- Every sub-account of every stored login that the broker still lists (`active`), linked to a
-- trader or not, halted or not: `halt --flatten` closes every position, and a position outlives
-- the trader that opened it (deleted, moved to another sub-account, or gone with a recorder).
-- The username: rows of one login are one account at the broker (engine.config_cache), while
-- they hold a credential of it (a proven password, or an OAuth token: whether, never the
-- secret). A password no login or proven row vouched for proves nothing (add takes any).
SELECT s.id AS sub_account_id, s.broker_account_id, s.name AS sub_name, s.halted AS sub_halted,
       a.id AS account_id, a.env, a.label, a.halted AS account_halted, a.user_id, a.username,
       ((a.password_enc IS NOT NULL AND a.password_proven_at IS NOT NULL)
        OR a.oauth_token_enc IS NOT NULL) AS has_credential
FROM sub_accounts s
JOIN accounts a ON a.id = s.account_id
WHERE s.active
ORDER BY s.id;

-- name: trading.config_rowless()
-- The demo/live logins with no sub-account row at all (added, `accounts sync` never run): a
-- flatten cannot reach their positions (no row, no session), so it names them, not done.
-- A login is its username: another row of it with sub-accounts (another user's) reaches its
-- accounts already, if it holds a credential of the login (as config_subs has_credential: a
-- row that only typed the username reaches nothing). A row holding no credential at all can
-- never open a session: not named, or the flatten stayed pending for good.
SELECT a.label
FROM accounts a
WHERE a.env <> 'paper'
  AND a.username IS NOT NULL
  AND (a.password_enc IS NOT NULL OR a.oauth_token_enc IS NOT NULL)
  AND NOT EXISTS (SELECT 1
                  FROM accounts o
                  JOIN sub_accounts s ON s.account_id = o.id
                  WHERE o.env = a.env AND lower(o.username) = lower(a.username)
                    AND (o.id = a.id
                         OR (o.password_enc IS NOT NULL AND o.password_proven_at IS NOT NULL)
                         OR o.oauth_token_enc IS NOT NULL))
ORDER BY a.id;

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
    -- the username, and whether the row holds a credential of it: which rows are one account
    -- at the broker (engine.config_cache); a password proven later re-keys the row
    (SELECT string_agg(concat_ws(':', id, halted, env, label, user_id,
                                 (password_enc IS NOT NULL AND password_proven_at IS NOT NULL)
                                 OR oauth_token_enc IS NOT NULL,
                                 lower(username)), ','
                       ORDER BY id)
     FROM accounts),
    -- the name is the accountSpec orders are sent with: a sync's rename must reach the engine
    (SELECT string_agg(concat_ws(':', id, halted, active, account_id, broker_account_id, name),
                       ',' ORDER BY id)
     FROM sub_accounts),
    (SELECT string_agg(name || ':' || value::text || ':' || updated_at::text, ',')
     FROM system_flags)));

-- name: trading.recorder_counters($1 since)
-- As the engine counts in memory: an entry is one the recorder's own filters let through
-- (``detail.entry``), whatever its traders then did with it.
SELECT recorder_id,
       count(*) AS signals,
       count(*) FILTER (WHERE (detail ->> 'entry')::boolean) AS entries,
       max(received_at) FILTER (WHERE (detail ->> 'entry')::boolean) AS last_entry_at,
       count(*) FILTER (WHERE (detail ->> 'nth_seen')::boolean) AS seen
FROM signals
WHERE received_at >= $1 AND recorder_id IS NOT NULL AND duplicate_of IS NULL
GROUP BY recorder_id;

-- name: trading.trader_entries($1 since)
-- The engine lists, on each signal's detail, the traders that counted it as an entry
-- (trader_entries) and those whose own every-Nth refused it (trader_seen). Its every-Nth saw
-- both (the engine counts an entry as seen too), and a signal is in one list at most.
SELECT t.trader_id::bigint AS trader_id,
       count(*) FILTER (WHERE t.kind = 'entry') AS entries,
       max(t.received_at) FILTER (WHERE t.kind = 'entry') AS last_entry_at,
       count(*) AS seen
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

-- name: trading.positions($1 sub_account_ids)
SELECT sub_account_id, symbol, net_pos, net_price, updated_at
FROM positions WHERE sub_account_id = ANY($1::bigint[]);

-- name: trading.open_position_fills($1 sub_account_ids)
-- The fills of every position still open, oldest first: the lots it holds (engine.pnl.open_lots).
SELECT f.sub_account_id, f.symbol, f.side, f.qty, f.price
FROM fills f
JOIN positions p ON p.sub_account_id = f.sub_account_id AND p.symbol = f.symbol
WHERE p.net_pos <> 0 AND f.sub_account_id = ANY($1::bigint[])
ORDER BY f.sub_account_id, f.symbol, f.filled_at, f.broker_fill_id;

-- name: trading.paper_ids_used($1 account_id)
-- The highest broker id a paper login's orders and fills were given (one counter numbers
-- both, across all its sub-accounts, linked now or not): its next run numbers on from there,
-- so that run's fills are not taken for stored ones.
WITH subs AS (SELECT id FROM sub_accounts WHERE account_id = $1)
SELECT greatest(
    (SELECT max(broker_order_id) FROM orders WHERE sub_account_id IN (SELECT id FROM subs)),
    (SELECT max(broker_fill_id) FROM fills WHERE sub_account_id IN (SELECT id FROM subs)),
    0
)::bigint AS used;

-- name: trading.orders_of($1 sub_account_id)
SELECT * FROM orders WHERE sub_account_id = $1 ORDER BY broker_order_id;

-- name: trading.fills_of($1 sub_account_id)
SELECT * FROM fills WHERE sub_account_id = $1 ORDER BY broker_fill_id;

-- name: trading.trades_of($1 sub_account_id)
SELECT * FROM trades WHERE sub_account_id = $1 ORDER BY id;

-- name: trading.paper_open_orders($1 sub_account_ids, $2 open_statuses)
-- A paper login's open orders as the mirror last wrote them, for the paper broker to keep
-- working after a restart (jtrades/broker/paper_restore.py), with what it needs beyond the row:
-- the request of the intent the order came from (its own, else its OCO partner's: a pair's
-- second leg has no intent of its own), the request of its parent's intent (a strategy's or an
-- OSO's brackets), the price its parent filled at (where a leg's autoTrail and breakeven are
-- measured from) and when that intent was made (the session a DAY order was placed in: one of
-- an earlier session has expired).
SELECT o.sub_account_id, o.broker_order_id, o.cl_ord_id, o.symbol, o.side, o.qty, o.order_type,
       o.price, o.stop_price, o.status, o.parent_id, o.oco_id,
       COALESCE(i.request, oi.request) AS request,
       COALESCE(i.created_at, oi.created_at) AS placed_at,
       pi.request AS parent_request,
       (SELECT f.price FROM fills f
        WHERE f.sub_account_id = o.sub_account_id AND f.broker_order_id = o.parent_id
        ORDER BY f.broker_fill_id LIMIT 1) AS parent_fill_price
FROM orders o
LEFT JOIN order_intents i ON i.id = o.intent_id
LEFT JOIN orders oc ON oc.sub_account_id = o.sub_account_id AND oc.broker_order_id = o.oco_id
LEFT JOIN order_intents oi ON oi.id = oc.intent_id
LEFT JOIN orders p ON p.sub_account_id = o.sub_account_id AND p.broker_order_id = o.parent_id
LEFT JOIN order_intents pi ON pi.id = p.intent_id
WHERE o.sub_account_id = ANY($1::bigint[]) AND o.status = ANY($2::text[])
ORDER BY o.sub_account_id, o.broker_order_id;
