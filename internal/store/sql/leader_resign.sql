-- Gives up the lease $1 if holder $2 still holds it, so another replica
-- takes over at once rather than after the TTL.
DELETE FROM leader_leases WHERE name = $1 AND holder = $2
