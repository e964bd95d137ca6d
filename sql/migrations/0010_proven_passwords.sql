-- 0010: when Tradovate last accepted the password an account holds. A stored password used to
-- make its row one of its login's accounts (merged at the broker with the owner's rows, its
-- add-sub ids checked against the owner's sync) whatever it was: `accounts set-password`
-- stored a guessed one with a warning. A password now counts only once a login or session with
-- it succeeded (the daemon's registry, `accounts sync`); every password write clears this.
-- Rows stored before start unproven: their next login or session proves them again.
ALTER TABLE accounts ADD COLUMN password_proven_at timestamptz;
