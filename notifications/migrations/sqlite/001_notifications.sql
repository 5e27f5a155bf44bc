CREATE TABLE notifications (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	idempotency_key TEXT    NOT NULL UNIQUE,
	request_hash    TEXT    NOT NULL, -- the same key with another body is refused
	to_address      TEXT    NOT NULL,
	subject         TEXT    NOT NULL,
	body            TEXT    NOT NULL,
	calendar        TEXT    NOT NULL DEFAULT '',
	status          TEXT    NOT NULL DEFAULT 'pending',
	attempts        INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	next_attempt_at INTEGER NOT NULL, -- Unix microseconds
	lease_until     INTEGER NOT NULL DEFAULT 0, -- a worker holds it until then
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	sent_at         INTEGER
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
