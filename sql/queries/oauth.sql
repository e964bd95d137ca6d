-- OAuth connect: the account a callback's state names, and the token it brings.
-- Only jtrades/oauth.py runs these.

-- name: oauth.account($1 id)
SELECT id, label, env, username FROM accounts WHERE id = $1;

-- name: oauth.set_token($1 id, $2 oauth_token_enc, $3 oauth_key_id, $4 oauth_expires_at)
UPDATE accounts SET oauth_token_enc = $2, oauth_key_id = $3, oauth_expires_at = $4
WHERE id = $1;
