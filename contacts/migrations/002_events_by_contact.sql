-- The snapshot reads the latest event of each contact up to a seq.
CREATE INDEX events_by_contact ON events (contact_id, seq);
