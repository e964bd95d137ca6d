-- 0003: a change to what the daemon caches (its configuration snapshot and the webhook token
-- hashes) notifies it as it commits, instead of the daemon polling a fingerprint every second.
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
