-- Notification requests for notifications, written in the same transaction
-- as the appointment change they announce (a transactional outbox).
CREATE TABLE outbox (
	id              {{id}},
	appointment_id  {{int}} NOT NULL REFERENCES appointments (id),
	contact_id      {{int}} NOT NULL,
	kind            TEXT    NOT NULL, -- invitation, change, cancellation
	to_address      TEXT    NOT NULL,
	subject         TEXT    NOT NULL,
	body            TEXT    NOT NULL,
	calendar        TEXT    NOT NULL,
	idempotency_key TEXT    NOT NULL UNIQUE,
	status          TEXT    NOT NULL DEFAULT 'pending', -- pending, sent, failed
	attempts        {{int}} NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	next_attempt_at {{int}} NOT NULL,
	created_at      {{int}} NOT NULL,
	updated_at      {{int}} NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_appointment ON outbox (appointment_id);
