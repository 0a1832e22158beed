-- Appends audit events (internal/api writes one per mutating request and
-- per refused attempt), a group-committed batch in ONE statement: the
-- arrays hold one element per event, in the order they were recorded,
-- which is the order of their ids.
INSERT INTO audit_events (actor, action, resource, resource_id, namespace, method, path, status, outcome, request_id)
SELECT a.actor, a.action, a.resource, nullif(a.resource_id, ''), nullif(a.namespace, ''), a.method, a.path,
       a.status, a.outcome, nullif(a.request_id, '')
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
            $9::text[], $10::text[]) WITH ORDINALITY
     AS a(actor, action, resource, resource_id, namespace, method, path, status, outcome, request_id, ord)
ORDER BY a.ord
