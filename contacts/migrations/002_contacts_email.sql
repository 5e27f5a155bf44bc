-- Emails are unique among contacts, whatever their case (the store checks
-- it in the writing transaction); this index makes that check a lookup.
CREATE INDEX contacts_by_email ON contacts (lower(email));
