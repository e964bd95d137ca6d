-- 0012: what stays on a sub-account once no alert reaches it, as last mirrored: its positions,
-- and its orders still working (a resting limit entry fills later, into a position no alert
-- closes; "buy 1 working"). `trader delete`, `trader edit --account`, `recorder delete` and a
-- recorder's symbol change refuse while their sub-accounts hold any (traders.held_positions,
-- recorders.followers_positions: one definition for both).
CREATE VIEW sub_account_holdings AS
SELECT p.sub_account_id, p.symbol, p.net_pos, NULL::text AS working
FROM positions p WHERE p.net_pos <> 0
UNION ALL
SELECT o.sub_account_id, o.symbol, 0, lower(o.side) || ' ' || o.qty || ' working'
FROM orders o
WHERE o.status IN ('Working', 'PendingNew', 'Suspended', 'PendingCancel', 'PendingReplace');
