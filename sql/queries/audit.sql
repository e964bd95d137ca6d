-- Audit log: who changed what through management commands. Never secrets in detail.
-- Only jtrades/store/audit.py runs these.

-- name: audit.insert($1 actor, $2 action, $3 target, $4 detail)
INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)
RETURNING id;

-- name: audit.recent($1 limit)
SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1;
