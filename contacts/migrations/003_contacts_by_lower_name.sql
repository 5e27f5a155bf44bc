-- The list sorts by name regardless of case ("ada" beside "Ada", not after "Zoe").
DROP INDEX contacts_by_name;
CREATE INDEX contacts_by_lower_name ON contacts (lower(name), name, id);
