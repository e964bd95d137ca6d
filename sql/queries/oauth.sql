-- OAuth connect: the account a callback's state names, and the token it brings.
-- Only jtrades/oauth.py runs these.

-- name: oauth.account($1 id)
SELECT id, label, env, username, oauth_connected_at FROM accounts WHERE id = $1;

-- name: oauth.set_token($1 id, $2 oauth_token_enc, $3 oauth_key_id, $4 oauth_expires_at, $5 issued_at)
-- Only for a link issued after the account was last connected: a link works once, and of two
-- callbacks racing with one link, one stores. Returns the row when it stored.
UPDATE accounts SET oauth_token_enc = $2, oauth_key_id = $3, oauth_expires_at = $4,
                    oauth_connected_at = now()
WHERE id = $1 AND (oauth_connected_at IS NULL OR oauth_connected_at < $5)
RETURNING id;
