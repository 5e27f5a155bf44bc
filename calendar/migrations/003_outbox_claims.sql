-- A replica claims an outbox row until lease_until (Unix microseconds)
-- before calling notifications, so replicas make one call per request.
ALTER TABLE outbox ADD COLUMN lease_until {{int}} NOT NULL DEFAULT 0;
