-- Task create → complete, in seconds (p50, p99), and how many completed.
SELECT coalesce(percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at)), ARRAY[0, 0]::float8[]),
       count(*)
FROM tasks WHERE status = 'complete'
