-- 0005: when an account's OAuth token was stored, so that a sign-in link works once: a state
-- issued before the account was last connected is a replay (jtrades/oauth.py).
ALTER TABLE accounts ADD COLUMN oauth_connected_at timestamptz;
