-- 0006: an order intent outlives its signal, as it outlives its trader. Deleting a recorder (or
-- rejecting its owner) deleted, through its signals, the intents of other users who had traded
-- it on their own sub-accounts: the record reconciliation and paper restore read. Intents not
-- caused by a signal (protection, flatten) already have no signal_id.
ALTER TABLE order_intents DROP CONSTRAINT order_intents_signal_id_fkey;
ALTER TABLE order_intents ADD CONSTRAINT order_intents_signal_id_fkey
    FOREIGN KEY (signal_id) REFERENCES signals (id) ON DELETE SET NULL;
