-- `jtrades halt --flatten` as the engine carries it out: the liquidations a request already
-- wrote, and what it writes on its own request (under the flag's `flattens`, keyed by
-- requested_at: jtrades/store/flatten.py). Only jtrades/store/flatten.py runs these. Each write is
-- one statement that changes only its own request, and only while that is pending (neither done
-- nor cancelled): a statement waits for the CLI's lock on the row and then applies to what the CLI
-- committed, so it never brings back an older copy of the flag, nor revives a cancelled request.

-- name: flatten.liquidations($1 sub_account_id, $2 cl_ord_id prefix of the request and sub-account)
-- Its liquidations and the cancels of a flat contract's working orders: both number attempts.
-- The sub-account's index narrows the rows; a flatten is rare, a prefix scan of them is cheap.
SELECT cl_ord_id, kind, symbol, state, reason
FROM order_intents
WHERE sub_account_id = $1 AND kind IN ('liquidate', 'cancel') AND starts_with(cl_ord_id, $2)
ORDER BY id;

-- name: flatten.progress($1 requested_at, $2 progress)
-- Shown by `jtrades status --json`. Returns 1 when written (the request was still pending).
UPDATE system_flags
SET value = jsonb_set(value, ARRAY['flattens', $1::text, 'progress'], $2::jsonb),
    updated_at = now()
WHERE name = 'halted'
  AND jsonb_typeof(value #> ARRAY['flattens', $1::text]) = 'object'
  AND NOT (value #> ARRAY['flattens', $1::text]) ?| ARRAY['done_at', 'cancelled_at']
RETURNING 1;

-- name: flatten.done($1 requested_at, $2 done_at, $3 progress)
-- The request carried out, so a restart does not flatten a second time. Returns 1 when marked.
UPDATE system_flags
SET value = jsonb_set(value, ARRAY['flattens', $1::text],
                      (value #> ARRAY['flattens', $1::text])
                      || jsonb_build_object('done_at', $2::text, 'progress', $3::jsonb)),
    updated_at = now()
WHERE name = 'halted'
  AND jsonb_typeof(value #> ARRAY['flattens', $1::text]) = 'object'
  AND NOT (value #> ARRAY['flattens', $1::text]) ?| ARRAY['done_at', 'cancelled_at']
RETURNING 1;

-- name: flatten.in_flight($1 sub_account_ids)
-- Orders whose outcome is still open (written, or answered but not yet seen in the broker's
-- events; or unanswered): their position or working order may not be in the live view yet.
-- Liquidations, cancels and modifies add neither; the open-state index narrows the rows.
SELECT sub_account_id, cl_ord_id, kind, symbol, state
FROM order_intents
WHERE state IN ('pending', 'sent', 'unknown') AND sub_account_id = ANY($1::bigint[])
  AND kind NOT IN ('liquidate', 'cancel', 'modify')
ORDER BY id;
