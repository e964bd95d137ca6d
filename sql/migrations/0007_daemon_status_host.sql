-- 0007: where the daemon that writes the status row runs, so that `jtrades status` on the same
-- host tells a killed daemon (kill -9: its pid gone) from a live one at once, instead of after
-- its heartbeat goes stale (jtrades/store/status.py). host_id names the host, its boot and its
-- pid namespace (where a pid names one process); pid_start_ticks when that process started, in
-- clock ticks since boot (/proc/PID/stat): a pid reused by another process has another.
-- NULL: written by a daemon before this one, or where there is no /proc.
ALTER TABLE daemon_status ADD COLUMN host_id text;
ALTER TABLE daemon_status ADD COLUMN pid_start_ticks bigint;
