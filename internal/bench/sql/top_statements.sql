-- The statements that took the most database time (pg_stat_statements).
SELECT round(total_exec_time)::bigint, round(total_plan_time)::bigint, calls, round((total_exec_time / greatest(calls, 1))::numeric, 3)::float8,
       rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
FROM pg_stat_statements
ORDER BY total_exec_time DESC
LIMIT 12
