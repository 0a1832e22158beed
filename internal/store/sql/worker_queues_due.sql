-- For each queue waited on by long-polling workers, when its earliest
-- pending step becomes runnable (NULL: none), with the database's clock:
-- ONE query per wake-up for all the replica's waiters, whatever their number.
SELECT q.queue,
       (SELECT min(w.runnable_at) FROM workflow_steps w
        WHERE w.queue = q.queue AND w.status = 'pending' AND w.runnable_at IS NOT NULL),
       now()
FROM unnest($1::text[]) AS q(queue)
