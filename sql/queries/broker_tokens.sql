-- Broker access tokens, one per (env, login), encrypted: a restart reuses a valid token instead of
-- spending one of the few logins per hour Tradovate allows. Only jtrades/store/broker_tokens.py
-- runs these.

-- name: broker_tokens.get($1 env, $2 username)
SELECT env, username, token_enc, key_id, expires_at, broker_user_id, updated_at
FROM broker_tokens
WHERE env = $1 AND username = $2;

-- name: broker_tokens.upsert($1 env, $2 username, $3 token_enc, $4 key_id, $5 expires_at, $6 broker_user_id)
-- Only while an account names the login (as accounts.same_login compares): a running daemon
-- renews the token of a login whose last account was removed (accounts.forget_unnamed_tokens
-- deleted it) and wrote it back, and the next account naming the login was handed it whatever
-- password it held. Nothing is written otherwise (the token still works from memory).
INSERT INTO broker_tokens (env, username, token_enc, key_id, expires_at, broker_user_id)
SELECT $1, $2, $3, $4, $5, $6
WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.env = $1 AND lower(a.username) = lower($2))
ON CONFLICT (env, username) DO UPDATE
SET token_enc = EXCLUDED.token_enc, key_id = EXCLUDED.key_id, expires_at = EXCLUDED.expires_at,
    broker_user_id = COALESCE(EXCLUDED.broker_user_id, broker_tokens.broker_user_id),
    updated_at = now();

-- name: broker_tokens.delete($1 env, $2 username)
DELETE FROM broker_tokens WHERE env = $1 AND username = $2;
