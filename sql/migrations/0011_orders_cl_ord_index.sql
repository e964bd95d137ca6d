-- 0011: whether the broker had an order the daemon wrote, by its clOrdId. The protector asks,
-- for every naked position of a trader without a stop loss on every reconciliation pass and
-- under the account's dispatcher lock, whether a stop step closed across the day turn ever
-- reached the broker (owed_stops.evidence): without this it read the account's whole order
-- history, every contract.
CREATE INDEX orders_cl_ord_idx ON orders (sub_account_id, cl_ord_id);
