-- 0002: an OCO pair (a take-profit leg with its share of the stop) is an intent kind of its own,
-- so `orders list` and reconciliation see what was sent instead of a plain "order".
ALTER TABLE order_intents DROP CONSTRAINT order_intents_kind_check;
ALTER TABLE order_intents ADD CONSTRAINT order_intents_kind_check
    CHECK (kind IN ('order', 'oco', 'oso', 'strategy', 'liquidate', 'cancel', 'modify'));
UPDATE order_intents SET kind = 'oco' WHERE kind = 'order' AND request ->> 'type' = 'oco';
