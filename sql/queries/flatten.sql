-- `jtrades halt --flatten` as the engine carries it out: the liquidations a request already
-- wrote, and what it reports on the request while it works. Only jtrades/store/flatten.py runs
-- these (the request itself is written by `jtrades halt`, marked done by trading.flatten_done).

-- name: flatten.liquidations($1 sub_account_id, $2 cl_ord_id prefix of the request and sub-account)
-- The sub-account's index narrows the rows; a flatten is rare, a prefix scan of them is cheap.
SELECT cl_ord_id, symbol, state, reason
FROM order_intents
WHERE sub_account_id = $1 AND kind = 'liquidate' AND starts_with(cl_ord_id, $2)
ORDER BY id;

-- name: flatten.progress($1 requested_at, $2 progress)
-- Shown by `jtrades status --json` under the flag's flatten.progress.
UPDATE system_flags
SET value = jsonb_set(value, '{flatten,progress}', $2::jsonb), updated_at = now()
WHERE name = 'halted' AND value -> 'flatten' ->> 'requested_at' = $1;
