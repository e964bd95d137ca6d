-- Recorders: a signal source with its webhook token hash and complete risk settings.
-- The 22 risk columns always appear in RiskSettings field order (jtrades.engine.risk), so the
-- store passes them as one positional block.

-- name: recorders.user_by_name($1 name)
SELECT id, name, status, timezone FROM users WHERE lower(name) = lower($1);

-- name: recorders.insert($1 user_id, $2 name, $3 symbol, $4 token_hash, $5 is_private, $6..$27 risk settings)
INSERT INTO recorders (
    user_id, name, symbol, token_hash, is_private,
    size, add_size, tp, tp_units, sl, sl_units, sl_type, trail_trigger, trail_freq,
    breakeven_trigger, breakeven_offset, dca, direction, windows, cooldown_s, max_signals,
    every_nth, max_daily_loss, max_contracts, auto_flat_after, same_direction, inverse)
VALUES ($1, $2, $3, $4, $5,
    $6, $7, $8, $9, $10, $11, $12, $13, $14,
    $15, $16, $17, $18, $19, $20, $21,
    $22, $23, $24, $25, $26, $27)
RETURNING id;

-- name: recorders.select($1 id or NULL, $2 name or NULL, $3 as_user_id or NULL = every recorder)
-- Visibility: as a user, their own recorders and public ones; never another user's private one.
SELECT r.id, r.name, r.user_id, u.name AS user_name, u.status AS owner_status,
       u.timezone AS owner_timezone, r.symbol, r.is_private, r.recording_enabled,
       r.created_at, r.updated_at,
       r.size, r.add_size, r.tp, r.tp_units, r.sl, r.sl_units, r.sl_type, r.trail_trigger,
       r.trail_freq, r.breakeven_trigger, r.breakeven_offset, r.dca, r.direction, r.windows,
       r.cooldown_s, r.max_signals, r.every_nth, r.max_daily_loss, r.max_contracts,
       r.auto_flat_after, r.same_direction, r.inverse
FROM recorders r JOIN users u ON u.id = r.user_id
WHERE ($1::bigint IS NULL OR r.id = $1)
  AND ($2::text IS NULL OR lower(r.name) = lower($2))
  AND ($3::bigint IS NULL OR r.user_id = $3 OR NOT r.is_private)
ORDER BY lower(r.name);

-- name: recorders.select_by_token_hash($1 token_hash)
SELECT r.id, r.name, r.user_id, u.name AS user_name, u.status AS owner_status,
       u.timezone AS owner_timezone, r.symbol, r.is_private, r.recording_enabled,
       r.created_at, r.updated_at,
       r.size, r.add_size, r.tp, r.tp_units, r.sl, r.sl_units, r.sl_type, r.trail_trigger,
       r.trail_freq, r.breakeven_trigger, r.breakeven_offset, r.dca, r.direction, r.windows,
       r.cooldown_s, r.max_signals, r.every_nth, r.max_daily_loss, r.max_contracts,
       r.auto_flat_after, r.same_direction, r.inverse
FROM recorders r JOIN users u ON u.id = r.user_id
WHERE r.token_hash = $1;

-- name: recorders.lock_by_name($1 name)
-- Read-merge-write edits hold the row so two edits cannot interleave.
SELECT id FROM recorders WHERE lower(name) = lower($1) FOR UPDATE;

-- name: recorders.lock_shared($1 id or NULL, $2 name or NULL)
-- Trader changes read the recorder's settings and visibility: holding this share lock until
-- commit serialises them with a recorder edit or a private switch (which lock FOR UPDATE).
SELECT id FROM recorders
WHERE ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR lower(name) = lower($2))
FOR SHARE;

-- name: recorders.update_settings($1 id, $2 symbol, $3..$24 risk settings)
UPDATE recorders SET
    symbol = $2, size = $3, add_size = $4, tp = $5, tp_units = $6, sl = $7, sl_units = $8,
    sl_type = $9, trail_trigger = $10, trail_freq = $11, breakeven_trigger = $12,
    breakeven_offset = $13, dca = $14, direction = $15, windows = $16, cooldown_s = $17,
    max_signals = $18, every_nth = $19, max_daily_loss = $20, max_contracts = $21,
    auto_flat_after = $22, same_direction = $23, inverse = $24, updated_at = now()
WHERE id = $1;

-- name: recorders.set_private($1 id, $2 is_private)
UPDATE recorders SET is_private = $2, updated_at = now() WHERE id = $1;

-- name: recorders.set_recording($1 id, $2 recording_enabled)
UPDATE recorders SET recording_enabled = $2, updated_at = now() WHERE id = $1;

-- name: recorders.set_token_hash($1 id, $2 token_hash)
UPDATE recorders SET token_hash = $2, updated_at = now() WHERE id = $1;

-- name: recorders.delete($1 id)
DELETE FROM recorders WHERE id = $1;

-- name: recorders.token_hashes()
SELECT token_hash, id FROM recorders;

-- name: recorders.follower_count($1 recorder_id)
SELECT count(*) AS traders, count(*) FILTER (WHERE t.user_id <> r.user_id) AS other_users
FROM traders t JOIN recorders r ON r.id = t.recorder_id
WHERE t.recorder_id = $1;

-- name: recorders.followers_positions($1 recorder_id)
-- The positions its traders' sub-accounts hold, as last mirrored, with the symbols of the other
-- recorders whose traders link the same sub-account: a position of a root one of them trades
-- is still theirs to close. A change of this recorder's symbol to another root, or its
-- delete, leaves the others where no alert can close them.
SELECT DISTINCT a.label, s.name AS sub_name, p.symbol, p.net_pos, p.working,
       ARRAY(SELECT r2.symbol FROM trader_accounts ta2
             JOIN traders t2 ON t2.id = ta2.trader_id
             JOIN recorders r2 ON r2.id = t2.recorder_id
             WHERE ta2.sub_account_id = s.id AND r2.id <> $1) AS others
FROM traders t
JOIN trader_accounts ta ON ta.trader_id = t.id
JOIN sub_accounts s ON s.id = ta.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN sub_account_holdings p ON p.sub_account_id = s.id
WHERE t.recorder_id = $1
ORDER BY a.label, s.name, p.symbol;

-- name: recorders.followed_by_others($1 recorder_id)
-- Other users' traders following this recorder: deleting it deletes them (their links, their
-- multipliers and overrides) with it.
SELECT t.id AS trader_id, u.name AS owner
FROM traders t JOIN recorders r ON r.id = t.recorder_id JOIN users u ON u.id = t.user_id
WHERE r.id = $1 AND t.user_id <> r.user_id
ORDER BY t.id;
