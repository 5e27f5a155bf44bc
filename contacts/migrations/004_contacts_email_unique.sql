-- Two writes at once (two replicas, or two batches of one replica on
-- PostgreSQL) could each find an email free and both take it: the index
-- now refuses the second. A database that already holds two contacts with
-- one email stops this migration; give one of them another email first.
DROP INDEX contacts_by_email;
CREATE UNIQUE INDEX contacts_email_unique ON contacts (lower(email));
