-- This install's own name for its iCal UIDs when BASE_URL gives none, so two
-- installs' appointment-1 are not one event to a calendar app (see installHost).
CREATE TABLE install (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	uid_host TEXT NOT NULL
);
