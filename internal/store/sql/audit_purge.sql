-- Forgets up to $2 audit rows that happened before $1, oldest first (the
-- by-time index serves it); each batch is its own short statement.
WITH old AS (
  SELECT audit_id FROM audit_events
  WHERE occurred_at < $1
  ORDER BY occurred_at, audit_id
  LIMIT $2
)
DELETE FROM audit_events a USING old WHERE a.audit_id = old.audit_id
