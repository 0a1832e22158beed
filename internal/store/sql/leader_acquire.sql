-- Takes or renews the lease $1 for holder $2 for $3 ms: a free or expired
-- lease is taken, our own is renewed, anyone else's is left alone. Returns
-- the holder and expiry after the statement, whoever holds it.
WITH taken AS (
  INSERT INTO leader_leases AS l (name, holder, expires_at)
  VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at,
        acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE now() END
    WHERE l.holder = excluded.holder OR l.expires_at < now()
  RETURNING holder, expires_at
)
SELECT holder, expires_at FROM taken
UNION ALL
SELECT holder, expires_at FROM leader_leases WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM taken)
