-- Forgets workers not seen for $1 ms.
DELETE FROM workers WHERE last_seen_at < now() - $1::bigint * interval '1 millisecond'
