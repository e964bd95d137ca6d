-- Users: registration, approval, status and time zone. Names and emails are unique regardless
-- of case (users_name_key / users_email_key are indexes on lower()). Only jtrades/store/users.py
-- runs these.

-- name: users.insert($1 name, $2 email, $3 password_hash, $4 status, $5 is_admin, $6 timezone)
INSERT INTO users (name, email, password_hash, status, is_admin, timezone, approved_at)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 = 'approved' THEN now() END)
RETURNING id, name, email, status, is_admin, timezone, created_at, approved_at;

-- name: users.by_name($1 name)
SELECT id, name, email, status, is_admin, timezone, created_at, approved_at
FROM users WHERE lower(name) = lower($1);

-- name: users.by_id($1 id)
SELECT id, name, email, status, is_admin, timezone, created_at, approved_at
FROM users WHERE id = $1;

-- name: users.list($1 pending_only)
SELECT id, name, email, status, is_admin, timezone, created_at, approved_at
FROM users WHERE NOT $1 OR status = 'pending'
ORDER BY lower(name);

-- name: users.set_status($1 id, $2 status)
UPDATE users
SET status = $2,
    approved_at = CASE WHEN $2 = 'approved' THEN COALESCE(approved_at, now()) ELSE approved_at END
WHERE id = $1
RETURNING id, name, email, status, is_admin, timezone, created_at, approved_at;

-- name: users.set_timezone($1 id, $2 timezone)
UPDATE users SET timezone = $2 WHERE id = $1
RETURNING id, name, email, status, is_admin, timezone, created_at, approved_at;

-- name: users.owned_counts($1 id)
SELECT (SELECT count(*) FROM accounts WHERE user_id = $1) AS accounts,
       (SELECT count(*) FROM sub_accounts s JOIN accounts a ON a.id = s.account_id
         WHERE a.user_id = $1) AS sub_accounts,
       (SELECT count(*) FROM recorders WHERE user_id = $1) AS recorders,
       (SELECT count(*) FROM traders WHERE user_id = $1) AS traders;

-- name: users.followed_by_others($1 id)
-- Other users' traders following this user's recorders: a delete would take them with it.
SELECT t.id AS trader_id, u.name AS owner
FROM traders t JOIN recorders r ON r.id = t.recorder_id JOIN users u ON u.id = t.user_id
WHERE r.user_id = $1 AND t.user_id <> $1
ORDER BY t.id;

-- name: users.delete($1 id)
DELETE FROM users WHERE id = $1 RETURNING id;

-- name: users.password_hash($1 id)
SELECT password_hash FROM users WHERE id = $1;
