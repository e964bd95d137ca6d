-- The daemon's heartbeat and the kill switch. Only jtrades/store/status.py runs these.

-- name: status.heartbeat($1 pid, $2 started_at, $3 detail, $4 host_id, $5 pid_start_ticks)
-- host_id and pid_start_ticks say where that pid is the daemon's process (NULL: not known).
INSERT INTO daemon_status (id, pid, started_at, heartbeat_at, detail, host_id, pid_start_ticks)
VALUES (1, $1, $2, now(), $3, $4, $5)
ON CONFLICT (id) DO UPDATE
SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, heartbeat_at = now(),
    detail = EXCLUDED.detail, host_id = EXCLUDED.host_id,
    pid_start_ticks = EXCLUDED.pid_start_ticks;

-- name: status.get()
SELECT pid, started_at, heartbeat_at, detail, now() AS db_now, host_id, pid_start_ticks
FROM daemon_status WHERE id = 1;

-- name: status.halted()
SELECT value, updated_at FROM system_flags WHERE name = 'halted';

-- name: status.create_halted()
-- So that there is a row to lock (status.lock_halted): two first halts then queue on it too.
INSERT INTO system_flags (name, value) VALUES ('halted', '{"halted": false}')
ON CONFLICT (name) DO NOTHING;

-- name: status.lock_halted()
-- The CLI rewrites the flag from what it read: it reads under the row's lock, in the transaction
-- that writes, so a request or the daemon's progress committed meanwhile is not overwritten.
SELECT value FROM system_flags WHERE name = 'halted' FOR UPDATE;

-- name: status.set_halted($1 value)
INSERT INTO system_flags (name, value, updated_at) VALUES ('halted', $1, now())
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: status.set_account_halted($1 label, $2 halted)
-- Halting a login halts all of its sub-accounts through the account flag (the engine ORs both).
UPDATE accounts SET halted = $2 WHERE lower(label) = lower($1) RETURNING id, label;

-- name: status.halted_accounts()
SELECT a.label, u.name AS user_name
FROM accounts a JOIN users u ON u.id = a.user_id
WHERE a.halted
ORDER BY lower(a.label);

-- name: status.open_positions()
-- With the owner's time zone: `status` and `halt` show the times there, as `positions list` does.
SELECT u.name AS user_name, a.label AS account, s.name AS sub_account, p.symbol, p.net_pos,
       p.net_price, p.updated_at, u.timezone
FROM positions p
JOIN sub_accounts s ON s.id = p.sub_account_id
JOIN accounts a ON a.id = s.account_id
JOIN users u ON u.id = a.user_id
WHERE p.net_pos <> 0
ORDER BY lower(u.name), lower(a.label), s.name, p.symbol;

-- name: status.ping()
SELECT 1;
