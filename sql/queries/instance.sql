-- The one-daemon-per-database lock (a session advisory lock). Only jtrades/store/instance.py
-- runs these.

-- name: instance.whoami()
-- Asked before the lock, on the connection that will ask for it: an answer to the lock lost on
-- the way (the server granted it) leaves a session the daemon still knows as its own.
SELECT pid, backend_start AS since, application_name AS name
FROM pg_stat_activity WHERE pid = pg_backend_pid();

-- name: instance.ask_keepalives()
-- The server lets go of a session whose client vanished after about two minutes of silence
-- rather than its default of two hours and more: a lock left with a session of a daemon that
-- cannot end it any more (crashed, restarted) no longer refuses the next one for that long.
-- Set by a query, not at connect: a pooler in front may refuse unknown startup parameters.
-- Ignored on a Unix socket.
SELECT set_config('tcp_keepalives_idle', '60', false),
       set_config('tcp_keepalives_interval', '10', false),
       set_config('tcp_keepalives_count', '6', false);

-- name: instance.try_lock($1 key)
SELECT pg_try_advisory_lock($1) AS held;

-- name: instance.end_session($1 pid, $2 backend_start, $3 application_name)
-- No row: that session is gone. The name carries the daemon process's random nonce: a session
-- of another daemon never matches, even a pid reused within the same microsecond.
SELECT pg_terminate_backend(pid) AS ended
FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2 AND application_name = $3;

-- name: instance.ping()
SELECT 1;
