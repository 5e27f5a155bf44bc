-- A follower's checkpoint: the last applied seq of feed name and the page it
-- came from, written in the same transaction as the events it applied.
-- IF NOT EXISTS: databases from before this migration created it at start.
CREATE TABLE IF NOT EXISTS feed_checkpoints (
	name       TEXT    PRIMARY KEY,
	seq        {{int}} NOT NULL,
	page       TEXT    NOT NULL,
	updated_at {{int}} NOT NULL
);
