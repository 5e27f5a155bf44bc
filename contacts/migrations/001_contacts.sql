-- Contacts and their event log (the transactional outbox the feed is built from).
CREATE TABLE contacts (
	id         {{id}}, -- never reused
	name       TEXT    NOT NULL,
	email      TEXT    NOT NULL,
	phone      TEXT    NOT NULL DEFAULT '',
	version    {{int}} NOT NULL,
	created_at {{int}} NOT NULL, -- Unix microseconds
	updated_at {{int}} NOT NULL
);
CREATE INDEX contacts_by_name ON contacts (name, id);

CREATE TABLE events (
	seq        {{int}} PRIMARY KEY, -- dense: taken from event_head in the writing transaction
	type       TEXT    NOT NULL,
	contact_id {{int}} NOT NULL,
	title      TEXT    NOT NULL,
	summary    TEXT    NOT NULL,
	data       TEXT    NOT NULL, -- the contact after the change, JSON
	created_at {{int}} NOT NULL
);

-- One row: the last seq. Incrementing it locks the row until commit, so
-- events commit in seq order with no gaps, whatever the database (a
-- sequence would leave gaps and let a later seq become visible before an
-- earlier one).
CREATE TABLE event_head (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq {{int}} NOT NULL
);
INSERT INTO event_head (id, seq) VALUES (1, 0);
