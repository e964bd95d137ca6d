-- 0009: one position's own history, newest first. The protector asks, for every naked position
-- of a trader without a stop loss on every reconciliation pass and under the account's
-- dispatcher lock, for the last plan on the contract and the contract's latest fill
-- (owed_stops.evidence). Without these it walked order_intents' primary key backwards through
-- every intent any account wrote since the position's last one (300,000 rows, 150 ms), and read
-- every fill of the sub-account's day in every contract.
CREATE INDEX order_intents_position_idx ON order_intents (sub_account_id, symbol, id);
CREATE INDEX fills_position_idx ON fills (sub_account_id, symbol, broker_fill_id);
