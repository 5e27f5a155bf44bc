-- Which instance follows feed name: the holder, until expires_at (Unix
-- microseconds) unless it renews. token grows each time the lease changes
-- hands; every checkpoint write checks it, so an instance that lost the
-- lease can never commit again (fencing).
CREATE TABLE feed_leases (
	name       TEXT    PRIMARY KEY,
	holder     TEXT    NOT NULL,
	token      {{int}} NOT NULL,
	expires_at {{int}} NOT NULL
);
