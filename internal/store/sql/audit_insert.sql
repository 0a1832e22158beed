-- Appends one audit event (internal/api writes one per mutating request
-- and per refused attempt).
INSERT INTO audit_events (actor, action, resource, resource_id, namespace, method, path, status, outcome, request_id)
VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), $6, $7, $8, $9, nullif($10, ''))
