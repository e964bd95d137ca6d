-- Traders: a user's link from one recorder to some of their broker sub-accounts, with overrides.
-- The 22 override columns appear in RiskSettings field order (NULL = inherit the recorder's).

-- name: traders.insert($1 user_id, $2 recorder_id, $3 enabled, $4..$25 overrides)
INSERT INTO traders (
    user_id, recorder_id, enabled,
    size, add_size, tp, tp_units, sl, sl_units, sl_type, trail_trigger, trail_freq,
    breakeven_trigger, breakeven_offset, dca, direction, windows, cooldown_s, max_signals,
    every_nth, max_daily_loss, max_contracts, auto_flat_after, same_direction, inverse)
VALUES ($1, $2, $3,
    $4, $5, $6, $7, $8, $9, $10, $11, $12,
    $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23, $24, $25)
RETURNING id;

-- name: traders.select($1 id or NULL, $2 user_id or NULL, $3 recorder_id or NULL)
SELECT t.id, t.user_id, u.name AS user_name, t.recorder_id, r.name AS recorder_name,
       t.enabled, t.created_at, t.updated_at,
       t.size, t.add_size, t.tp, t.tp_units, t.sl, t.sl_units, t.sl_type, t.trail_trigger,
       t.trail_freq, t.breakeven_trigger, t.breakeven_offset, t.dca, t.direction, t.windows,
       t.cooldown_s, t.max_signals, t.every_nth, t.max_daily_loss, t.max_contracts,
       t.auto_flat_after, t.same_direction, t.inverse
FROM traders t
JOIN users u ON u.id = t.user_id
JOIN recorders r ON r.id = t.recorder_id
WHERE ($1::bigint IS NULL OR t.id = $1)
  AND ($2::bigint IS NULL OR t.user_id = $2)
  AND ($3::bigint IS NULL OR t.recorder_id = $3)
ORDER BY t.id;

-- name: traders.lock($1 id)
SELECT id FROM traders WHERE id = $1 FOR UPDATE;

-- name: traders.links($1 trader_ids bigint[])
SELECT ta.trader_id, ta.sub_account_id, a.label AS account_label, s.name AS sub_account_name,
       s.broker_account_id, ta.multiplier, ta.enabled
FROM trader_accounts ta
JOIN sub_accounts s ON s.id = ta.sub_account_id
JOIN accounts a ON a.id = s.account_id
WHERE ta.trader_id = ANY($1::bigint[])
ORDER BY ta.trader_id, lower(a.label), s.name;

-- name: traders.sub_accounts_for_label($1 account label)
-- Every sub-account of the login with that label, whoever owns it: the same-owner trigger is
-- the rule that refuses another user's, so it is exercised rather than bypassed.
SELECT a.id AS account_id, a.label, a.user_id, s.id AS sub_account_id, s.name,
       s.broker_account_id, s.active
FROM accounts a LEFT JOIN sub_accounts s ON s.account_id = a.id
WHERE lower(a.label) = lower($1)
ORDER BY s.name;

-- name: traders.delete_links($1 trader_id)
DELETE FROM trader_accounts WHERE trader_id = $1;

-- name: traders.insert_links($1 trader_id, $2 sub_account_ids bigint[], $3 multipliers numeric[])
INSERT INTO trader_accounts (trader_id, sub_account_id, multiplier)
SELECT $1, x.sub_account_id, x.multiplier
FROM unnest($2::bigint[], $3::numeric[]) AS x(sub_account_id, multiplier);

-- name: traders.update_overrides($1 id, $2..$23 overrides)
UPDATE traders SET
    size = $2, add_size = $3, tp = $4, tp_units = $5, sl = $6, sl_units = $7, sl_type = $8,
    trail_trigger = $9, trail_freq = $10, breakeven_trigger = $11, breakeven_offset = $12,
    dca = $13, direction = $14, windows = $15, cooldown_s = $16, max_signals = $17,
    every_nth = $18, max_daily_loss = $19, max_contracts = $20, auto_flat_after = $21,
    same_direction = $22, inverse = $23, updated_at = now()
WHERE id = $1;

-- name: traders.set_enabled($1 id, $2 enabled)
UPDATE traders SET enabled = $2, updated_at = now() WHERE id = $1;

-- name: traders.delete($1 id)
DELETE FROM traders WHERE id = $1;

-- name: traders.active_for_recorder($1 recorder_id)
-- One row per tradable link: trader enabled, its user approved and still able to see the
-- recorder, the link enabled, the sub-account active. Halted flags are returned, not filtered:
-- a halt blocks entries but closes must still reach the account.
SELECT t.id AS trader_id, t.user_id, u.name AS user_name, u.timezone,
       t.size, t.add_size, t.tp, t.tp_units, t.sl, t.sl_units, t.sl_type, t.trail_trigger,
       t.trail_freq, t.breakeven_trigger, t.breakeven_offset, t.dca, t.direction, t.windows,
       t.cooldown_s, t.max_signals, t.every_nth, t.max_daily_loss, t.max_contracts,
       t.auto_flat_after, t.same_direction, t.inverse,
       s.id AS sub_account_id, s.broker_account_id, s.name AS sub_account_name,
       a.id AS account_id, a.label AS account_label, a.env, a.username,
       ta.multiplier, (a.halted OR s.halted) AS halted
FROM traders t
JOIN users u ON u.id = t.user_id AND u.status = 'approved'
JOIN recorders r ON r.id = t.recorder_id AND (r.user_id = t.user_id OR NOT r.is_private)
JOIN trader_accounts ta ON ta.trader_id = t.id AND ta.enabled
JOIN sub_accounts s ON s.id = ta.sub_account_id AND s.active
JOIN accounts a ON a.id = s.account_id AND a.user_id = t.user_id
WHERE t.recorder_id = $1 AND t.enabled
ORDER BY t.id, s.id;

-- name: traders.held_positions($1 trader_id)
-- The positions its sub-accounts hold, as last mirrored, with the symbols of the recorders
-- other traders linking the same sub-account follow: a position of a root one of them trades
-- is still theirs to close. Deleting the trader, or unlinking the sub-account, leaves the
-- others where no alert can close them.
SELECT DISTINCT s.id AS sub_account_id, a.label, s.name AS sub_name, p.symbol, p.net_pos,
       p.working,
       ARRAY(SELECT r2.symbol FROM trader_accounts ta2
             JOIN traders t2 ON t2.id = ta2.trader_id
             JOIN recorders r2 ON r2.id = t2.recorder_id
             WHERE ta2.sub_account_id = s.id AND t2.id <> $1) AS others
FROM trader_accounts ta
JOIN sub_accounts s ON s.id = ta.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN sub_account_holdings p ON p.sub_account_id = s.id
WHERE ta.trader_id = $1
ORDER BY a.label, s.name, p.symbol;
