-- Every stored secret and the key that sealed it, for re-sealing after a key rotation
-- (`jtrades accounts reseal`). Only jtrades/store/sealed.py runs these.

-- name: secrets.accounts_to_reseal($1 current_key_id)
-- Locked: a concurrent `accounts add`/`connect` on one of these rows waits for the reseal.
SELECT id, label, env, username, password_enc, password_key_id, oauth_token_enc, oauth_key_id
FROM accounts
WHERE password_key_id <> $1 OR oauth_key_id <> $1
ORDER BY id
FOR UPDATE;

-- name: secrets.set_account($1 id, $2 password_enc, $3 password_key_id, $4 oauth_token_enc, $5 oauth_key_id)
UPDATE accounts
SET password_enc = $2, password_key_id = $3, oauth_token_enc = $4, oauth_key_id = $5
WHERE id = $1;

-- name: secrets.tokens_to_reseal($1 current_key_id)
SELECT env, username, token_enc, key_id
FROM broker_tokens
WHERE key_id <> $1
ORDER BY env, username
FOR UPDATE;

-- name: secrets.set_token($1 env, $2 username, $3 token_enc, $4 key_id)
UPDATE broker_tokens SET token_enc = $3, key_id = $4 WHERE env = $1 AND username = $2;

-- name: secrets.drop_token($1 env, $2 username)
DELETE FROM broker_tokens WHERE env = $1 AND username = $2;

-- name: secrets.keys_in_use()
SELECT key_id, count(*) AS secrets
FROM (
    SELECT password_key_id AS key_id FROM accounts WHERE password_key_id IS NOT NULL
    UNION ALL
    SELECT oauth_key_id FROM accounts WHERE oauth_key_id IS NOT NULL
    UNION ALL
    SELECT key_id FROM broker_tokens
) AS sealed
GROUP BY key_id
ORDER BY key_id;
