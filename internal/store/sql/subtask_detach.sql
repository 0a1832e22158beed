-- A subtask step hands its attempt over to its child: it stays in_progress,
-- but no replica holds it (lease_owner names the child, so no replica renews
-- or releases it) and lease_expires_at becomes the step's deadline, after
-- which the rescue of expired leases fails the attempt like a timeout.
-- Fenced by the attempt: a step already taken back or cancelled is left alone.
UPDATE workflow_steps
SET lease_owner = 'subtask:' || $3::text,
    lease_expires_at = now() + $4::bigint * interval '1 millisecond',
    updated_at = now()
WHERE workflow_step_id = $1 AND attempts = $2 AND status = 'in_progress'
RETURNING workflow_step_id
