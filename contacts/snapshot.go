package contacts

import (
	"context"
	"fmt"
	"strconv"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
)

// Snapshot returns, for each contact with id above after, in id order and
// at most limit of them, its latest event with seq ≤ asOf: the contact as
// it was then, or its tombstone (contact.deleted) when it had been
// deleted. The keys are contact ids in decimal. Events below the head
// never change, so the answer for one asOf is the same whenever it is
// asked: every page of a snapshot is consistent with the others.
func (s *SQLStore) Snapshot(ctx context.Context, asOf int64, after string, limit int) ([]feed.Event, string, error) {
	var afterID int64
	if after != "" {
		var err error
		if afterID, err = strconv.ParseInt(after, 10, 64); err != nil || afterID < 0 {
			return nil, "", derrors.Problems{"after": "must be a contact id"}
		}
	}
	rows, err := s.db.Query(ctx, `SELECT e.seq, e.type, e.contact_id, e.title, e.summary, e.data, e.created_at
		FROM (SELECT contact_id, max(seq) AS seq FROM events WHERE seq <= $1 AND contact_id > $2
			GROUP BY contact_id ORDER BY contact_id LIMIT $3) latest
		JOIN events e ON e.seq = latest.seq
		ORDER BY e.contact_id`, asOf, afterID, limit)
	if err != nil {
		return nil, "", fmt.Errorf("snapshot: %w", err)
	}
	defer rows.Close()
	out := make([]feed.Event, 0, min(limit, 1000))
	var last int64
	for rows.Next() {
		var e feed.Event
		var at int64
		var data string
		if err := rows.Scan(&e.Seq, &e.Type, &last, &e.Title, &e.Summary, &data, &at); err != nil {
			return nil, "", fmt.Errorf("snapshot: %w", err)
		}
		e.Data, e.Time = []byte(data), sqldb.Time(at)
		e.Link = "/contacts/" + strconv.FormatInt(last, 10)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("snapshot: %w", err)
	}
	if len(out) == 0 {
		return out, "", nil
	}
	return out, strconv.FormatInt(last, 10), nil
}
