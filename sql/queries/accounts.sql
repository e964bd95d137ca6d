-- Broker logins (accounts) and their sub-accounts. Labels are unique regardless of case.
-- Secret columns are read only by accounts.credentials. Only jtrades/store/accounts.py runs these.

-- name: accounts.insert($1 user_id, $2 label, $3 env, $4 username, $5 password_enc, $6 password_key_id)
INSERT INTO accounts (user_id, label, env, username, password_enc, password_key_id)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: accounts.list($1 user_id_or_null)
SELECT a.id, a.user_id, u.name AS user_name, a.label, a.env, a.username,
       a.password_enc IS NOT NULL AS has_password, a.oauth_token_enc IS NOT NULL AS has_oauth,
       a.oauth_expires_at, a.halted, a.created_at, a.synced_at
FROM accounts a JOIN users u ON u.id = a.user_id
WHERE $1::bigint IS NULL OR a.user_id = $1
ORDER BY lower(u.name), lower(a.label);

-- name: accounts.by_label($1 label)
SELECT a.id, a.user_id, u.name AS user_name, a.label, a.env, a.username,
       a.password_enc IS NOT NULL AS has_password, a.oauth_token_enc IS NOT NULL AS has_oauth,
       a.oauth_expires_at, a.halted, a.created_at, a.synced_at
FROM accounts a JOIN users u ON u.id = a.user_id
WHERE lower(a.label) = lower($1);

-- name: accounts.subs($1 account_ids)
SELECT id, account_id, broker_account_id, name, active, halted
FROM sub_accounts WHERE account_id = ANY($1::bigint[])
ORDER BY account_id, lower(name);

-- name: accounts.credentials($1 id)
SELECT a.id, a.label, a.env, a.username, a.password_enc, a.password_key_id,
       a.oauth_token_enc, a.oauth_key_id, a.oauth_expires_at,
       a.password_proven_at IS NOT NULL AS password_proven
FROM accounts a WHERE a.id = $1;

-- name: accounts.set_password($1 id, $2 env, $3 username, $4 password_enc, $5 password_key_id)
-- Written only while the row still names the login the ciphertext was sealed for (env and
-- username are its associated data): on any other row it would never open. The row's proof
-- (password_proven_at) stays: it says the row once proved it holds a credential of its login,
-- and the rows of a shared login whose passwords were changed while the daemon ran (its
-- session renewed, never logging in again) were never proven again and came apart at the
-- broker. A new password that differs from the login's other proven ones is refused by
-- login_credential, as ever; a new row starts unproven.
UPDATE accounts SET password_enc = $4, password_key_id = $5
WHERE id = $1 AND env = $2 AND env <> 'paper' AND username = $3
RETURNING id;

-- name: accounts.prove_password($1 id, $2 password_enc)
-- A login or session with the row's password succeeded (Tradovate accepted it): the password
-- proves the login from now on (the engine merges the row with its login's, add-sub checks its
-- ids against the login's sync). Only while the row still holds the ciphertext that was opened
-- for that login: a set-password meanwhile stored a password nobody has tried yet. Also when a
-- proven row of the login stores the very same password (store.accounts.vouch_password).
UPDATE accounts SET password_proven_at = now()
WHERE id = $1 AND password_enc = $2 AND password_proven_at IS NULL
RETURNING id;

-- name: accounts.same_login($1 id)
-- The other accounts naming this account's Tradovate login (they share its token and session),
-- and what each holds of it (whether, never the secret): only a proven password is compared,
-- and only it or one stored beside an OAuth connection vouches for an equal one.
SELECT o.id, o.label, o.oauth_token_enc IS NOT NULL AS has_oauth,
       o.password_enc IS NOT NULL AS has_password,
       o.password_enc IS NOT NULL AND o.password_proven_at IS NOT NULL AS password_proven
FROM accounts a JOIN accounts o
  ON o.env = a.env AND lower(o.username) = lower(a.username) AND o.id <> a.id
WHERE a.id = $1 AND a.env <> 'paper'
ORDER BY o.id;

-- name: accounts.unproven_passwords($1 ids)
-- Which of these demo/live rows hold a password no login, session or proven row of the login
-- has vouched for yet: the registry tries to prove only these on each pass (few, and none
-- once proven).
SELECT id FROM accounts
WHERE id = ANY($1::bigint[]) AND env <> 'paper'
  AND password_enc IS NOT NULL AND password_proven_at IS NULL
ORDER BY id;

-- name: accounts.enabled_traders($1 id)
SELECT DISTINCT t.id
FROM trader_accounts ta
JOIN traders t ON t.id = ta.trader_id
JOIN sub_accounts s ON s.id = ta.sub_account_id
WHERE s.account_id = $1 AND t.enabled AND ta.enabled
ORDER BY t.id;

-- name: accounts.delete($1 id)
DELETE FROM accounts WHERE id = $1 RETURNING id;

-- name: accounts.forget_unnamed_tokens()
-- The stored tokens of logins no account names any more (its last account removed, or its
-- user rejected), compared as accounts.same_login compares: broker_tokens has no key to
-- accounts, and a token left behind was handed to the next account naming the login, whatever
-- password it held (nothing is left to compare it with). Run after the delete, in its
-- transaction. Migration 0008 ran the same for the tokens left before.
DELETE FROM broker_tokens t
WHERE NOT EXISTS (
    SELECT 1 FROM accounts a WHERE a.env = t.env AND lower(a.username) = lower(t.username)
);

-- name: accounts.insert_sub($1 account_id, $2 broker_account_id, $3 name)
INSERT INTO sub_accounts (account_id, broker_account_id, name)
VALUES ($1, $2, $3)
RETURNING id, account_id, broker_account_id, name, active, halted;

-- name: accounts.upsert_sub($1 account_id, $2 broker_account_id, $3 name)
INSERT INTO sub_accounts (account_id, broker_account_id, name)
VALUES ($1, $2, $3)
ON CONFLICT (account_id, broker_account_id) DO UPDATE SET name = EXCLUDED.name, active = true
RETURNING id, account_id, broker_account_id, name, active, halted, (xmax = 0) AS inserted;

-- name: accounts.free_sub_names($1 account_id, $2 broker_account_ids, $3 names)
-- Before a sync's upserts: a row holding a name the broker now gives another account id (one
-- typed with a wrong id by `add-sub`, an account gone and re-created, two names swapped) takes
-- "name (id N)", unique by its id. Its own upsert then gives it its new name if the broker
-- still lists it; else it is deactivated under that name. Kept, UNIQUE (account_id, name)
-- failed every sync from then on.
UPDATE sub_accounts s SET name = s.name || ' (id ' || s.broker_account_id || ')'
FROM unnest($2::bigint[], $3::text[]) AS f (broker_account_id, name)
WHERE s.account_id = $1 AND s.name = f.name AND s.broker_account_id <> f.broker_account_id;

-- name: accounts.deactivate_missing_subs($1 account_id, $2 broker_account_ids)
UPDATE sub_accounts SET active = false
WHERE account_id = $1 AND active AND NOT (broker_account_id = ANY($2::bigint[]))
RETURNING id, account_id, broker_account_id, name, active, halted;

-- name: accounts.mark_synced($1 id)
UPDATE accounts SET synced_at = now() WHERE id = $1;

-- name: accounts.open_exposure($1 account_ids)
-- What the logins still hold at the broker as last mirrored, and orders whose outcome is still
-- open: removing the rows takes them out of jtrades' reach (halt --flatten, protection,
-- reconciliation) while they go on at the broker. The first 20, for the refusal's message.
-- Only sub-accounts the broker still lists (`active`): the rows of one it dropped (a closed
-- evaluation account) are never mirrored again, and "flatten first" could never clear them.
SELECT a.label, s.name AS sub_name, x.what, x.symbol, x.qty
FROM (
    SELECT p.sub_account_id, 'position' AS what, p.symbol, p.net_pos AS qty
    FROM positions p WHERE p.net_pos <> 0
    UNION ALL
    SELECT o.sub_account_id, 'working order', o.symbol, o.qty
    FROM orders o
    WHERE o.status IN ('Working', 'PendingNew', 'Suspended', 'PendingCancel', 'PendingReplace')
    UNION ALL
    SELECT i.sub_account_id, 'order of open outcome', i.symbol, i.qty
    FROM order_intents i WHERE i.state IN ('pending', 'sent', 'unknown')
) AS x
JOIN sub_accounts s ON s.id = x.sub_account_id
JOIN accounts a ON a.id = s.account_id
WHERE a.id = ANY($1::bigint[]) AND s.active
ORDER BY a.label, s.name, x.what, x.symbol
LIMIT 20;

-- name: accounts.login_listed($1 id)
-- What the broker listed for this account's Tradovate login (any of its accounts, any user's,
-- env and username compared as accounts.same_login), as `accounts sync` stored it: whether any
-- of them was synced, and the ids of the active sub-accounts that were there at their row's
-- last sync (kept by it; one recorded by hand after it was never checked). For add-sub.
-- Only for a row that proves the login: it holds a credential of it (a password Tradovate
-- accepted, password_proven_at, or an OAuth token), or was synced itself. A row that only
-- typed the username, or stored a password nobody has tried (`accounts set-password` takes
-- any), vouches for nothing: it gets "never synced" (unverified), and the engine keys it by its
-- own row (engine.config_cache).
SELECT EXISTS (
           SELECT 1 FROM accounts o
           WHERE o.env = a.env AND lower(o.username) = lower(a.username)
             AND o.synced_at IS NOT NULL
       ) AND proves.login AS synced,
       ARRAY(
           SELECT DISTINCT s.broker_account_id
           FROM accounts o JOIN sub_accounts s ON s.account_id = o.id
           WHERE proves.login
             AND o.env = a.env AND lower(o.username) = lower(a.username)
             AND o.synced_at IS NOT NULL AND s.active AND s.created_at <= o.synced_at
           ORDER BY 1
       ) AS listed
FROM accounts a
CROSS JOIN LATERAL (
    SELECT (a.password_enc IS NOT NULL AND a.password_proven_at IS NOT NULL)
           OR a.oauth_token_enc IS NOT NULL OR a.synced_at IS NOT NULL AS login
) AS proves
WHERE a.id = $1 AND a.env <> 'paper';

-- name: accounts.existing_ids($1 ids)
-- Which of these accounts are still stored (the daemon closes the sessions of removed ones).
SELECT id FROM accounts WHERE id = ANY($1::bigint[]);
