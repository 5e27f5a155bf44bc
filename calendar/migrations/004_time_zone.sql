-- The IANA time zone an appointment was booked in ('' for a bare offset):
-- every occurrence's offset is computed from it, summer time included.
ALTER TABLE appointments ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
