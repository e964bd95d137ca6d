-- jtrades schema: what sql/migrations/ add up to (a test keeps the two in step).

-- Risk settings repeat on recorders (all set) and traders (NULL = inherit): one domain per field
-- so the CHECKs are written once.
CREATE DOMAIN tp_units AS text CHECK (VALUE IN ('ticks', 'points', 'percent'));
CREATE DOMAIN sl_units AS text CHECK (VALUE IN ('ticks', 'points', 'percent', 'dollars'));
CREATE DOMAIN sl_type AS text CHECK (VALUE IN ('fixed', 'trailing'));
CREATE DOMAIN trade_direction AS text CHECK (VALUE IN ('both', 'long', 'short'));
CREATE DOMAIN same_direction AS text CHECK (VALUE IN ('ignore', 'add', 'reenter'));
CREATE DOMAIN pos_int AS integer CHECK (VALUE >= 1);
CREATE DOMAIN nonneg_int AS integer CHECK (VALUE >= 0);
CREATE DOMAIN pos_num AS numeric CHECK (VALUE > 0);
CREATE DOMAIN nonneg_num AS numeric CHECK (VALUE >= 0);

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    email           text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    password_hash   text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'disabled')),
    is_admin        boolean NOT NULL DEFAULT false,
    timezone        text NOT NULL DEFAULT 'America/Chicago',
    created_at      timestamptz NOT NULL DEFAULT now(),
    approved_at     timestamptz
);
CREATE UNIQUE INDEX users_name_key ON users (lower(name));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A Tradovate login (or a paper account) owned by a user. Secrets are ciphertexts with the id of
-- the key that wrote them, so the master key can be rotated.
CREATE TABLE accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label           text NOT NULL CHECK (label ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    env             text NOT NULL CHECK (env IN ('demo', 'live', 'paper')),
    username        text,
    password_enc    bytea,
    password_key_id text,
    oauth_token_enc bytea,
    oauth_key_id    text,
    oauth_expires_at timestamptz,
    halted          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz,
    oauth_connected_at timestamptz,  -- when the OAuth token was stored (a sign-in link works once)
    password_proven_at timestamptz,  -- when the row proved it holds its login's password (NULL: unproven; store.accounts)
    CHECK ((password_enc IS NULL) = (password_key_id IS NULL)),
    CHECK ((oauth_token_enc IS NULL) = (oauth_key_id IS NULL)),
    CHECK (env = 'paper' OR username IS NOT NULL)
);
CREATE UNIQUE INDEX accounts_label_key ON accounts (lower(label));
CREATE INDEX accounts_user_idx ON accounts (user_id);

-- Tokens are per login, not per account row: every user of a login shares one session.
CREATE TABLE broker_tokens (
    env             text NOT NULL CHECK (env IN ('demo', 'live')),
    username        text NOT NULL,
    token_enc       bytea NOT NULL,
    key_id          text NOT NULL,
    expires_at      timestamptz NOT NULL,
    broker_user_id  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (env, username)
);

-- The broker's accounts under a login (Tradovate account id + name used as accountSpec).
CREATE TABLE sub_accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    broker_account_id bigint NOT NULL,
    name            text NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    halted          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, broker_account_id),
    UNIQUE (account_id, name)
);

CREATE TABLE recorders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    symbol          text NOT NULL CHECK (symbol ~ '^[A-Za-z0-9_:!]{1,40}$'),
    token_hash      bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    is_private      boolean NOT NULL DEFAULT true,
    recording_enabled boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- risk settings (all present)
    size            pos_int NOT NULL DEFAULT 1,
    add_size        pos_int NOT NULL DEFAULT 1,
    tp              jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tp) = 'array'),
    tp_units        tp_units NOT NULL DEFAULT 'ticks',
    sl              nonneg_num NOT NULL DEFAULT 0,
    sl_units        sl_units NOT NULL DEFAULT 'ticks',
    sl_type         sl_type NOT NULL DEFAULT 'fixed',
    trail_trigger   pos_num,
    trail_freq      pos_num,
    breakeven_trigger pos_num,
    breakeven_offset nonneg_num NOT NULL DEFAULT 0,
    dca             boolean NOT NULL DEFAULT false,
    direction       trade_direction NOT NULL DEFAULT 'both',
    windows         jsonb NOT NULL DEFAULT '[]'
                    CHECK (jsonb_typeof(windows) = 'array' AND jsonb_array_length(windows) <= 2),
    cooldown_s      nonneg_int NOT NULL DEFAULT 0,
    max_signals     pos_int,
    every_nth       pos_int NOT NULL DEFAULT 1,
    max_daily_loss  pos_num,
    max_contracts   pos_int,
    auto_flat_after time,
    same_direction  same_direction NOT NULL DEFAULT 'ignore',
    inverse         boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX recorders_name_key ON recorders (lower(name));
CREATE UNIQUE INDEX recorders_token_key ON recorders (token_hash);
CREATE INDEX recorders_user_idx ON recorders (user_id);

CREATE TABLE traders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recorder_id     bigint NOT NULL REFERENCES recorders (id) ON DELETE CASCADE,
    enabled         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- overrides (NULL = inherit the recorder's)
    size            pos_int,
    add_size        pos_int,
    tp              jsonb CHECK (tp IS NULL OR jsonb_typeof(tp) = 'array'),
    tp_units        tp_units,
    sl              nonneg_num,
    sl_units        sl_units,
    sl_type         sl_type,
    trail_trigger   pos_num,
    trail_freq      pos_num,
    breakeven_trigger pos_num,
    breakeven_offset nonneg_num,
    dca             boolean,
    direction       trade_direction,
    windows         jsonb CHECK (windows IS NULL
                                 OR (jsonb_typeof(windows) = 'array' AND jsonb_array_length(windows) <= 2)),
    cooldown_s      nonneg_int,
    max_signals     pos_int,
    every_nth       pos_int,
    max_daily_loss  pos_num,
    max_contracts   pos_int,
    auto_flat_after time,
    same_direction  same_direction,
    inverse         boolean
);
CREATE INDEX traders_recorder_idx ON traders (recorder_id);
CREATE INDEX traders_user_idx ON traders (user_id);

-- Which sub-accounts a trader trades, each with its own size multiplier.
CREATE TABLE trader_accounts (
    trader_id       bigint NOT NULL REFERENCES traders (id) ON DELETE CASCADE,
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    multiplier      numeric NOT NULL DEFAULT 1 CHECK (multiplier > 0 AND multiplier <= 1000),
    enabled         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (trader_id, sub_account_id)
);
CREATE INDEX trader_accounts_sub_idx ON trader_accounts (sub_account_id);

-- A trader may only link its own user's sub-accounts (rule 5: accounts never mix).
CREATE FUNCTION trader_accounts_same_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM traders t
        JOIN sub_accounts s ON s.id = NEW.sub_account_id
        JOIN accounts a ON a.id = s.account_id
        WHERE t.id = NEW.trader_id AND a.user_id = t.user_id
    ) THEN
        RAISE EXCEPTION 'sub-account % does not belong to the owner of trader %',
            NEW.sub_account_id, NEW.trader_id USING ERRCODE = 'check_violation',
            CONSTRAINT = 'trader_accounts_same_owner';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trader_accounts_same_owner BEFORE INSERT OR UPDATE ON trader_accounts
    FOR EACH ROW EXECUTE FUNCTION trader_accounts_same_owner();

-- An unapproved user cannot own an enabled trader, and may only follow visible recorders.
CREATE FUNCTION traders_check_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner_status text;
BEGIN
    SELECT status INTO owner_status FROM users WHERE id = NEW.user_id;
    IF NEW.enabled AND owner_status <> 'approved' THEN
        RAISE EXCEPTION 'user % is not approved: their traders stay disabled', NEW.user_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'traders_enabled_requires_approved';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM recorders r WHERE r.id = NEW.recorder_id
                   AND (r.user_id = NEW.user_id OR NOT r.is_private)) THEN
        RAISE EXCEPTION 'recorder % is private to another user', NEW.recorder_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'traders_recorder_visible';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER traders_check_owner BEFORE INSERT OR UPDATE ON traders
    FOR EACH ROW EXECUTE FUNCTION traders_check_owner();

-- Leaving 'approved' switches the user's traders off in the same transaction.
CREATE FUNCTION users_disable_traders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'approved' AND OLD.status = 'approved' THEN
        UPDATE traders SET enabled = false, updated_at = now()
        WHERE user_id = NEW.id AND enabled;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER users_disable_traders AFTER UPDATE OF status ON users
    FOR EACH ROW EXECUTE FUNCTION users_disable_traders();

-- Making a recorder private detaches other users' traders that followed it (they stay, disabled
-- is not enough: a private recorder must be invisible), so it is refused while others follow it.
CREATE FUNCTION recorders_private_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.is_private AND NOT OLD.is_private AND EXISTS (
        SELECT 1 FROM traders t WHERE t.recorder_id = NEW.id AND t.user_id <> NEW.user_id
    ) THEN
        RAISE EXCEPTION 'recorder % is followed by other users', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recorders_followed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER recorders_private_check BEFORE UPDATE OF is_private ON recorders
    FOR EACH ROW EXECUTE FUNCTION recorders_private_check();

-- Every delivery, raw, with its verdict. Kept forever (until its recorder or owner is deleted).
CREATE TABLE signals (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorder_id     bigint REFERENCES recorders (id) ON DELETE CASCADE,
    received_at     timestamptz NOT NULL DEFAULT now(),
    remote_addr     inet,
    content_type    text,
    raw_body        bytea NOT NULL,
    idem_key        text,
    duplicate_of    bigint REFERENCES signals (id) ON DELETE SET NULL,
    action          text CHECK (action IN ('buy', 'sell', 'close', 'cancel', 'add')),
    symbol          text,
    quantity        integer CHECK (quantity >= 1),
    price           numeric CHECK (price > 0),
    parsed          jsonb,
    verdict         text NOT NULL CHECK (verdict IN
                    ('received', 'accepted', 'rejected', 'invalid', 'duplicate', 'expired')),
    filter          text,
    reason          text,
    http_status     smallint NOT NULL DEFAULT 200 CHECK (http_status BETWEEN 200 AND 599),
    orders          integer NOT NULL DEFAULT 0 CHECK (orders >= 0),
    detail          jsonb,
    CHECK (verdict <> 'rejected' OR reason IS NOT NULL)
);
CREATE INDEX signals_recorder_idx ON signals (recorder_id, received_at DESC);
CREATE INDEX signals_received_idx ON signals (received_at DESC);

-- Idempotency keys: one atomic INSERT … ON CONFLICT decides whether a delivery is new.
-- Pruned after ≥ 24 h; the signal rows themselves stay.
CREATE TABLE signal_keys (
    recorder_id     bigint NOT NULL REFERENCES recorders (id) ON DELETE CASCADE,
    idem_key        text NOT NULL,
    signal_id       bigint NOT NULL REFERENCES signals (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recorder_id, idem_key)
);
CREATE INDEX signal_keys_created_idx ON signal_keys (created_at);

-- One order the daemon decided to send, written before it is sent (rule 1). It outlives its
-- signal and its trader (another user's recorder deleted): it is the record of what was sent.
CREATE TABLE order_intents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signal_id       bigint REFERENCES signals (id) ON DELETE SET NULL,
    trader_id       bigint REFERENCES traders (id) ON DELETE SET NULL,
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    cl_ord_id       text NOT NULL CHECK (length(cl_ord_id) BETWEEN 1 AND 64),
    step            smallint NOT NULL CHECK (step >= 0),
    kind            text NOT NULL CHECK (kind IN
                    ('order', 'oco', 'oso', 'strategy', 'liquidate', 'cancel', 'modify')),
    symbol          text NOT NULL,
    side            text CHECK (side IN ('Buy', 'Sell')),
    qty             integer CHECK (qty >= 1),
    request         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN
                    ('pending', 'sent', 'working', 'filled', 'rejected', 'cancelled',
                     'unknown', 'expired', 'done')),
    broker_order_id bigint,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cl_ord_id)
);
CREATE INDEX order_intents_signal_idx ON order_intents (signal_id);
CREATE INDEX order_intents_open_idx ON order_intents (state) WHERE state IN ('pending', 'sent', 'unknown');
CREATE INDEX order_intents_sub_idx ON order_intents (sub_account_id, created_at DESC);
-- one position's intents newest first (owed_stops.evidence: the last plan on a contract)
CREATE INDEX order_intents_position_idx ON order_intents (sub_account_id, symbol, id);

-- The broker's orders, mirrored from its event stream.
CREATE TABLE orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    broker_order_id bigint NOT NULL,
    intent_id       bigint REFERENCES order_intents (id) ON DELETE SET NULL,
    cl_ord_id       text,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty             integer NOT NULL CHECK (qty >= 0),
    order_type      text NOT NULL,
    price           numeric,
    stop_price      numeric,
    status          text NOT NULL,
    parent_id       bigint,
    oco_id          bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sub_account_id, broker_order_id)
);
-- whether the broker had an intent's order, by its clOrdId (owed_stops.evidence)
CREATE INDEX orders_cl_ord_idx ON orders (sub_account_id, cl_ord_id);

CREATE TABLE fills (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    broker_fill_id  bigint NOT NULL,
    broker_order_id bigint NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('Buy', 'Sell')),
    qty             integer NOT NULL CHECK (qty >= 1),
    price           numeric NOT NULL,
    filled_at       timestamptz NOT NULL,
    UNIQUE (sub_account_id, broker_fill_id)  -- Tradovate replays fills around the session change
);
CREATE INDEX fills_time_idx ON fills (sub_account_id, filled_at);
-- one position's latest fill (owed_stops.evidence)
CREATE INDEX fills_position_idx ON fills (sub_account_id, symbol, broker_fill_id);

CREATE TABLE positions (
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    symbol          text NOT NULL,
    net_pos         integer NOT NULL,
    net_price       numeric,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sub_account_id, symbol)
);

-- Closed round trips: what the daily-loss filter and reports read.
CREATE TABLE trades (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sub_account_id  bigint NOT NULL REFERENCES sub_accounts (id) ON DELETE CASCADE,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('long', 'short')),
    qty             integer NOT NULL CHECK (qty >= 1),
    entry_price     numeric NOT NULL,
    exit_price      numeric NOT NULL,
    pnl             numeric NOT NULL,
    opened_at       timestamptz NOT NULL,
    closed_at       timestamptz NOT NULL,
    CHECK (closed_at >= opened_at)
);
CREATE INDEX trades_closed_idx ON trades (sub_account_id, closed_at);

-- Instrument data from the broker, cached (tick size and value per point).
CREATE TABLE contracts (
    env             text NOT NULL CHECK (env IN ('demo', 'live', 'paper')),
    symbol          text NOT NULL,
    root            text NOT NULL,
    broker_contract_id bigint,
    tick_size       numeric NOT NULL CHECK (tick_size > 0),
    value_per_point numeric NOT NULL CHECK (value_per_point > 0),
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (env, symbol)
);

-- Kill switch and other daemon-wide flags.
CREATE TABLE system_flags (
    name            text PRIMARY KEY CHECK (name IN ('halted')),
    value           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A change to what the daemon caches (its configuration snapshot, the webhook token hashes)
-- notifies it as it commits (engine/changes.py).
CREATE FUNCTION notify_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jtrades_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER recorders_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON recorders
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER traders_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON traders
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER trader_accounts_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON trader_accounts FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER accounts_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER sub_accounts_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sub_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER system_flags_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON system_flags
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();

-- Who changed what, for management actions (never secrets).
CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    action          text NOT NULL,
    target          text,
    detail          jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);

-- The daemon's heartbeat and readiness, for `jtrades status`.
CREATE TABLE daemon_status (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    pid             integer NOT NULL,
    started_at      timestamptz NOT NULL,
    heartbeat_at    timestamptz NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    host_id         text,         -- the daemon's host, boot and pid namespace (status.host_id)
    pid_start_ticks bigint        -- its process's start since boot (a reused pid has another)
);

-- what stays on a sub-account once no alert reaches it: positions, and orders still working
CREATE VIEW sub_account_holdings AS
SELECT p.sub_account_id, p.symbol, p.net_pos, NULL::text AS working
FROM positions p WHERE p.net_pos <> 0
UNION ALL
SELECT o.sub_account_id, o.symbol, 0, lower(o.side) || ' ' || o.qty || ' working'
FROM orders o
WHERE o.status IN ('Working', 'PendingNew', 'Suspended', 'PendingCancel', 'PendingReplace');
