-- The fencing token of the lease under which the checkpoint was written:
-- it never goes down, so two writers would show.
ALTER TABLE feed_checkpoints ADD COLUMN lease_token {{int}} NOT NULL DEFAULT 0;
