-- The local copy of contacts, kept by following the contacts feed.
CREATE TABLE contacts (
	id         INTEGER PRIMARY KEY, -- the upstream contact id
	name       TEXT    NOT NULL,
	email      TEXT    NOT NULL,
	phone      TEXT    NOT NULL DEFAULT '',
	version    INTEGER NOT NULL,
	deleted    INTEGER NOT NULL DEFAULT 0, -- deleted upstream: kept for the appointments it is on
	updated_at INTEGER NOT NULL,           -- Unix microseconds, upstream
	seq        INTEGER NOT NULL            -- the feed event that last changed it
);
CREATE INDEX contacts_by_name ON contacts (name, id);

CREATE TABLE appointments (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	title      TEXT    NOT NULL,
	starts_at  TEXT    NOT NULL, -- RFC 3339 with the zone offset it was given in
	ends_at    TEXT    NOT NULL,
	start_utc  INTEGER NOT NULL, -- Unix microseconds, for ordering and ranges
	end_utc    INTEGER NOT NULL,
	location   TEXT    NOT NULL DEFAULT '',
	status     TEXT    NOT NULL DEFAULT 'confirmed',
	version    INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX appointments_by_end ON appointments (end_utc);

CREATE TABLE participants (
	appointment_id INTEGER NOT NULL REFERENCES appointments (id),
	contact_id     INTEGER NOT NULL REFERENCES contacts (id),
	PRIMARY KEY (appointment_id, contact_id)
);
CREATE INDEX participants_by_contact ON participants (contact_id);
