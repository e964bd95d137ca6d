-- 0004: `halt --flatten` requests accumulate under the flag's "flattens", keyed by requested_at,
-- instead of one "flatten" that the next request replaced (store/flatten.py). Data only: a
-- request written before the upgrade, still pending or finished, is carried over as it was.
UPDATE system_flags
SET value = (value - 'flatten')
    || jsonb_build_object('flattens', jsonb_build_object(
           value -> 'flatten' ->> 'requested_at', value -> 'flatten'))
WHERE name = 'halted'
  AND jsonb_typeof(value -> 'flatten') = 'object'
  AND value -> 'flatten' ->> 'requested_at' IS NOT NULL;
