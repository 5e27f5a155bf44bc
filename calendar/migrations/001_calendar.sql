-- The local copy of contacts, kept by following the contacts feed.
CREATE TABLE contacts (
	id         {{int}}  PRIMARY KEY, -- the upstream contact id
	name       TEXT     NOT NULL,
	email      TEXT     NOT NULL,
	phone      TEXT     NOT NULL DEFAULT '',
	version    {{int}}  NOT NULL,
	deleted    {{bool}} NOT NULL DEFAULT {{false}}, -- deleted upstream: kept for the appointments it is on
	updated_at {{int}}  NOT NULL, -- Unix microseconds, upstream
	seq        {{int}}  NOT NULL  -- the feed event that last changed it
);
CREATE INDEX contacts_by_name ON contacts (name, id);

CREATE TABLE appointments (
	id         {{id}},
	title      TEXT    NOT NULL,
	starts_at  TEXT    NOT NULL, -- RFC 3339 with the zone offset it was given in
	ends_at    TEXT    NOT NULL,
	start_utc  {{int}} NOT NULL, -- Unix microseconds, for ordering and ranges
	end_utc    {{int}} NOT NULL,
	location   TEXT    NOT NULL DEFAULT '',
	status     TEXT    NOT NULL DEFAULT 'confirmed',
	version    {{int}} NOT NULL,
	created_at {{int}} NOT NULL,
	updated_at {{int}} NOT NULL
);
CREATE INDEX appointments_by_end ON appointments (end_utc);

CREATE TABLE participants (
	appointment_id {{int}} NOT NULL REFERENCES appointments (id),
	contact_id     {{int}} NOT NULL REFERENCES contacts (id),
	PRIMARY KEY (appointment_id, contact_id)
);
CREATE INDEX participants_by_contact ON participants (contact_id);
