CREATE TABLE notifications (
	id              {{id}},
	idempotency_key TEXT    NOT NULL UNIQUE,
	request_hash    TEXT    NOT NULL, -- the same key with another body is refused
	to_address      TEXT    NOT NULL,
	subject         TEXT    NOT NULL,
	body            TEXT    NOT NULL,
	calendar        TEXT    NOT NULL DEFAULT '',
	status          TEXT    NOT NULL DEFAULT 'pending',
	attempts        {{int}} NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	next_attempt_at {{int}} NOT NULL, -- Unix microseconds
	lease_until     {{int}} NOT NULL DEFAULT 0, -- a worker holds it until then
	created_at      {{int}} NOT NULL,
	updated_at      {{int}} NOT NULL,
	sent_at         {{int}}
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
