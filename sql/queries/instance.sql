-- The one-daemon-per-database lock (a session advisory lock). Only jtrades/store/instance.py
-- runs these.

-- name: instance.try_lock($1 key)
-- The session that takes it names itself (pid and start) so a later daemon process can tell its
-- own lost session, still alive at the server, from another daemon's.
SELECT pg_try_advisory_lock($1) AS held, pg_backend_pid() AS pid,
       (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS since;

-- name: instance.end_session($1 pid, $2 backend_start)
-- No row: that session is gone.
SELECT pg_terminate_backend(pid) AS ended
FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2;

-- name: instance.ping()
SELECT 1;
