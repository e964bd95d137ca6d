-- 0008: the stored access tokens of logins no account names any more. Removing a login's last
-- account (or rejecting its user) left its token in broker_tokens (no key ties the two), and
-- the next account naming the login used that token whatever password it held: another user
-- listed, and could trade, the owner's sub-accounts. The store now deletes such a token with
-- the last account of its login (accounts.forget_unnamed_tokens); this removes those already
-- left. A login is named as accounts.same_login compares it: env, and username in any case.
DELETE FROM broker_tokens t
WHERE NOT EXISTS (
    SELECT 1 FROM accounts a WHERE a.env = t.env AND lower(a.username) = lower(t.username)
);
