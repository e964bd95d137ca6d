-- Signals: every webhook delivery, raw, with its verdict; and the idempotency keys that decide
-- duplicates. Only jtrades/store/signals.py runs these.

-- name: signals.claim($1 recorder_id, $2 idem_key, $3 received_at, $4 remote_addr, $5 content_type, $6 raw_body, $7 action, $8 symbol, $9 quantity, $10 price, $11 parsed, $12 window_s, $13 signal_id or NULL, $14 intents: a JSON array of objects, see intents.as_rows, $15 detail)
-- One statement decides and records: the key row is inserted, or the existing one (committed by
-- a racing delivery; ON CONFLICT DO UPDATE waits for it and returns it) names the first signal
-- while it is younger than the window; an older key is taken over by this delivery, which is
-- then new. A new signal's order intents (the arrays, possibly empty) go in with it, a
-- duplicate's are dropped: "stored", "not a duplicate" and "its orders are on disk" are one
-- commit, so the hot path has one round trip before the first order leaves (money rules 1, 3).
-- The signal id is drawn in advance by the caller (its orders' clOrdIds carry it), else here.
-- ``detail`` is what the filters counted (entry, nth_seen, the traders'): stored with the claim,
-- not only with the outcome, so a daemon that dies between the two rebuilds the same counts.
-- The window runs between the deliveries' receptions ($3, the key's created_at), not from
-- when each is claimed: a re-send received within it is a duplicate however late its claim
-- comes (it waits behind the first's, whose fate may take seconds to learn: claim_doubt).
WITH new AS (
    SELECT COALESCE($13::bigint, nextval(pg_get_serial_sequence('signals', 'id'))) AS id,
           $3::timestamptz - make_interval(secs => $12::double precision) AS window_start
), claimed AS (
    INSERT INTO signal_keys (recorder_id, idem_key, signal_id, created_at)
    SELECT $1, $2, new.id, $3::timestamptz FROM new
    ON CONFLICT (recorder_id, idem_key) DO UPDATE
    SET signal_id = CASE WHEN signal_keys.created_at < (SELECT window_start FROM new)
                         THEN EXCLUDED.signal_id ELSE signal_keys.signal_id END,
        created_at = CASE WHEN signal_keys.created_at < (SELECT window_start FROM new)
                          THEN EXCLUDED.created_at ELSE signal_keys.created_at END
    RETURNING signal_id
), inserted AS (
    INSERT INTO signals (id, recorder_id, idem_key, received_at, remote_addr, content_type,
                         raw_body, action, symbol, quantity, price, parsed, verdict, duplicate_of,
                         detail)
    OVERRIDING SYSTEM VALUE
    SELECT new.id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
           CASE WHEN claimed.signal_id = new.id THEN 'received' ELSE 'duplicate' END,
           NULLIF(claimed.signal_id, new.id),
           CASE WHEN claimed.signal_id = new.id THEN $15::jsonb END
    FROM new, claimed
    RETURNING id, duplicate_of
), intents AS (
    INSERT INTO order_intents
        (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind, symbol, side, qty,
         request, expires_at)
    SELECT inserted.id, t.trader_id, t.sub_account_id, t.cl_ord_id, t.step, t.kind, t.symbol,
           t.side, t.qty, t.request, t.expires_at
    FROM inserted,
         jsonb_to_recordset($14::jsonb) AS t (trader_id bigint, sub_account_id bigint,
             cl_ord_id text, step smallint, kind text, symbol text, side text, qty integer,
             request jsonb, expires_at timestamptz)
    WHERE inserted.duplicate_of IS NULL
    ON CONFLICT (cl_ord_id) DO NOTHING
    RETURNING id, cl_ord_id
)
SELECT inserted.id, inserted.duplicate_of, n.intent_ids, n.cl_ord_ids
FROM inserted,
     (SELECT array_agg(id) AS intent_ids, array_agg(cl_ord_id) AS cl_ord_ids FROM intents) n;

-- name: signals.claim_probe($1 signal_id)
-- After a claim's connection failed with the statement possibly sent: did it commit? The claim
-- inserts the signal row under an id drawn in advance, so inserting that id again decides it:
-- a claim still in flight makes this wait for its end (a read would not see it yet), one that
-- committed makes this a conflict (no row returned), one that never ran or rolled back lets
-- this insert (its id returned). The caller always rolls this back.
INSERT INTO signals (id, raw_body, verdict) OVERRIDING SYSTEM VALUE
VALUES ($1, ''::bytea, 'received')
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: signals.claimed($1 signal_id)
-- What a committed claim wrote, read back when its answer was lost: the dedup decision and
-- the intents (by clOrdId; one that already existed belongs to another signal).
SELECT s.duplicate_of, i.intent_ids, i.cl_ord_ids
FROM signals s,
     (SELECT array_agg(id) AS intent_ids, array_agg(cl_ord_id) AS cl_ord_ids
      FROM order_intents WHERE signal_id = $1) i
WHERE s.id = $1;

-- name: signals.insert($1 recorder_id, $2 received_at, $3 remote_addr, $4 content_type, $5 raw_body, $6 action, $7 symbol, $8 quantity, $9 price, $10 parsed, $11 verdict, $12 filter, $13 reason, $14 http_status, $15 detail, $16 signal_id or NULL)
-- A delivery that never reaches dedup (bad token, bad body, too large): stored with its verdict.
INSERT INTO signals (id, recorder_id, received_at, remote_addr, content_type, raw_body, action,
                     symbol, quantity, price, parsed, verdict, filter, reason, http_status, detail)
OVERRIDING SYSTEM VALUE
VALUES (COALESCE($16::bigint, nextval(pg_get_serial_sequence('signals', 'id'))), $1, $2, $3, $4,
        $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id;

-- name: signals.draw_ids($1 n)
-- Signal ids taken from the sequence ahead of the deliveries that will use them (a daemon that
-- stops leaves a few unused: ids have gaps, never repeats).
SELECT nextval(pg_get_serial_sequence('signals', 'id')) AS id FROM generate_series(1, $1);

-- name: signals.set_outcome($1 id, $2 verdict, $3 filter, $4 reason, $5 orders, $6 detail, $7 http_status)
-- The detail is merged into what the claim stored, and ``orders`` counts the intents the mirror
-- already saw reach the broker, read locked (their latest state, intents before the signal's
-- row), as in intents.finish_many.
WITH locked AS MATERIALIZED (
    SELECT state FROM order_intents WHERE signal_id = $1 ORDER BY id FOR UPDATE
)
UPDATE signals
SET verdict = $2, filter = $3, reason = $4,
    orders = GREATEST($5, (SELECT count(*) FROM locked
                           WHERE state IN ('sent', 'working', 'filled', 'cancelled', 'done'))),
    detail = CASE WHEN $6::jsonb IS NULL THEN detail ELSE COALESCE(detail, '{}') || $6::jsonb END,
    http_status = $7
WHERE id = $1;

-- name: signals.never_known($1 signal_id, $2 reason)
-- A claim in doubt whose fate was not learned in time, or learned not stored (then there is no
-- row): nothing of it was sent, and TradingView got a 503. Only a row still 'received' (a
-- duplicate's, or one another writer settled, is left as it is). The counts its claim recorded
-- go, as the live engine gave them back, and as give_back_unsent does for an interrupted
-- signal none of whose orders reached the broker: else a restart counted an entry that never
-- traded, and it refused the next real one.
UPDATE signals
SET verdict = 'expired', reason = $2, http_status = 503,
    detail = COALESCE(detail, '{}'::jsonb)
             || '{"entry": false, "nth_seen": false, "trader_entries": []}'::jsonb
WHERE id = $1 AND verdict = 'received';

-- name: signals.recount_orders($1 signal_ids)
-- After a mirror batch moved some of these signals' intents out of 'pending' or 'unknown' to a
-- state that means they reached the broker (mirror.write_batch returns them): a statement of
-- its own, so that its snapshot holds what an outcome write committed while the batch waited
-- for its locks. A signal still being handled ('received') gets its count from its outcome
-- (intents.finish_many reads the intents locked, so it sees the batch). Never lowered.
UPDATE signals s
SET orders = GREATEST(s.orders, (
    SELECT count(*) FROM order_intents i
    WHERE i.signal_id = s.id AND i.state IN ('sent', 'working', 'filled', 'cancelled', 'done')))
WHERE s.id = ANY($1::bigint[]) AND s.verdict <> 'received';

-- name: signals.result($1 id)
SELECT id, recorder_id, verdict, filter, reason, orders, duplicate_of, detail, http_status
FROM signals WHERE id = $1;

-- name: signals.list($1 recorder name or NULL, $2 since or NULL, $3 limit, $4 owner user name or NULL, $5 verdict or NULL)
SELECT s.id, s.received_at, r.name AS recorder, s.action, s.symbol, s.quantity, s.price,
       s.verdict, s.filter, s.reason, s.orders, s.http_status, s.duplicate_of, s.content_type
FROM signals s
LEFT JOIN recorders r ON r.id = s.recorder_id
LEFT JOIN users u ON u.id = r.user_id
WHERE ($1::text IS NULL OR lower(r.name) = lower($1))
  AND ($2::timestamptz IS NULL OR s.received_at >= $2)
  AND ($4::text IS NULL OR lower(u.name) = lower($4))
  AND ($5::text IS NULL OR s.verdict = $5)
ORDER BY s.id DESC
LIMIT $3;

-- name: signals.verdict_counts()
SELECT verdict, count(*) AS n FROM signals GROUP BY verdict;

-- name: signals.prune_keys($1 older_than)
-- Keys are kept at least 24 h, the longest window (the daemon prunes those older than 48 h);
-- signal rows stay.
WITH gone AS (DELETE FROM signal_keys WHERE created_at < $1 RETURNING 1)
SELECT count(*) FROM gone;

-- name: signals.settle_interrupted($1 before)
-- At start: signals a stopped daemon left 'received' get an explainable verdict (rule 9). Those
-- with order intents were being dispatched (reconciliation settles the orders); the rest never
-- reached the engine and are not traded late. The orders count, written with the outcome that
-- never was, is those already known to have reached the broker (the mirror saw them); the ones
-- reconciliation finds there by clOrdId are counted as it does (intents.set_state, which knows
-- these signals by this reason).
UPDATE signals s
SET verdict = CASE WHEN EXISTS (SELECT 1 FROM order_intents i WHERE i.signal_id = s.id)
                   THEN 'accepted' ELSE 'expired' END,
    reason = 'interrupted: the daemon stopped while handling this signal',
    orders = (SELECT count(*) FROM order_intents i
              WHERE i.signal_id = s.id
                AND i.state IN ('sent', 'working', 'filled', 'cancelled', 'done')),
    http_status = 200
WHERE s.verdict = 'received' AND s.received_at < $1
RETURNING s.id, s.verdict;

-- name: signals.give_back_unsent($1 since)
-- At start, after reconciliation resolved what it could: an interrupted signal (above) whose
-- orders never reached the broker gives back the counts its claim recorded, as a run that
-- lives does (engine.verdicts.Judged.settle); else the entry that never traded refused the next
-- real one (max signals), ran a cooldown and moved every-Nth after the restart.
-- Per trader: it keeps its ``trader_entries`` place only if an entry of its reached the broker
-- (``verdicts._reached``: the entry made, not a reversal's close, an open's cancels or a
-- trim's reduce alone): an intent whose request says ``entry`` (``account_plans._plan_one``:
-- the step of a plan that makes all the entry the alert asked for).
-- The recorder: its ``entry`` (and the ``nth_seen`` that came with it) goes when the signal has
-- intents and none reached the broker (every order expired unsent or was refused), when its
-- claim said every account's entry was held back (``held_back``: halted, at --max-contracts,
-- nothing to add to; whatever closes went, as the live verdict gives it back), or with no
-- intent at all while it was stored with accounts still to plan (``behind``: their locks held
-- by others; nothing can have been sent to them without an intent); with no intent otherwise,
-- what its traders decided is not known here, and it keeps counting. An intent "reached"
-- unless the broker refused it ('rejected': nothing changed) or it is 'expired', and an
-- expired cancel, liquidation or modify always may have (its expiry says "not confirmed");
-- one still open (pending, sent, unknown: not resolved yet) keeps its counts (fail closed).
-- Returns the signals changed.
WITH interrupted AS (
    SELECT s.id, s.detail,
           EXISTS (SELECT 1 FROM order_intents i WHERE i.signal_id = s.id) AS has_intents,
           NOT EXISTS (SELECT 1 FROM order_intents i
                       WHERE i.signal_id = s.id
                         AND i.state <> 'rejected'
                         AND (i.state <> 'expired'
                              OR i.kind IN ('cancel', 'liquidate', 'modify'))) AS none_reached
    FROM signals s
    WHERE s.received_at >= $1
      AND s.verdict IN ('accepted', 'expired')
      AND s.reason = 'interrupted: the daemon stopped while handling this signal'
      AND (COALESCE((s.detail ->> 'entry')::boolean, false)
           OR jsonb_array_length(COALESCE(s.detail -> 'trader_entries', '[]')) > 0)
), given AS (
    SELECT c.id,
           c.detail
           || CASE WHEN COALESCE((c.detail ->> 'entry')::boolean, false)
                        AND ((c.has_intents AND c.none_reached)
                             OR c.detail ? 'held_back'
                             OR (NOT c.has_intents AND c.detail ? 'behind'))
                   THEN '{"entry": false, "nth_seen": false}'::jsonb
                   ELSE '{}'::jsonb END
           || CASE WHEN c.detail ? 'trader_entries' THEN jsonb_build_object('trader_entries', (
                  SELECT COALESCE(jsonb_agg(e.value ORDER BY e.n), '[]'::jsonb)
                  FROM jsonb_array_elements(c.detail -> 'trader_entries')
                       WITH ORDINALITY AS e (value, n)
                  WHERE EXISTS (SELECT 1 FROM order_intents i
                                WHERE i.signal_id = c.id
                                  AND i.trader_id = (e.value #>> '{}')::bigint
                                  AND (i.request ->> 'entry')::boolean IS TRUE
                                  AND i.state NOT IN ('rejected', 'expired'))))
                   ELSE '{}'::jsonb END
           AS detail
    FROM interrupted c
)
UPDATE signals s
SET detail = g.detail
FROM given g
WHERE s.id = g.id AND s.detail IS DISTINCT FROM g.detail
RETURNING s.id;

