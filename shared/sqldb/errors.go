package sqldb

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"syndic/shared/derrors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// unavailable explains why err means the database cannot take writes now
// (read-only, full, shutting down, unreachable), or returns "".
func unavailable(err error) string {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 8: // SQLITE_READONLY
			return "the database is read-only"
		case 13: // SQLITE_FULL
			return "the disk (or the database's size limit) is full"
		case 10: // SQLITE_IOERR
			return "the database cannot be written (I/O error)"
		case 14: // SQLITE_CANTOPEN
			return "the database file cannot be opened"
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "25006":
			return "the database is read-only"
		case pe.Code == "53100":
			return "the database's disk is full"
		case pe.Code[:2] == "08", pe.Code[:2] == "57", pe.Code[:2] == "53":
			return "the database is not available (" + pe.Code + ")"
		}
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return "the database cannot be reached"
	}
	return ""
}

// classify wraps an error that means "not now" with derrors.ErrUnavailable,
// so it is answered 503 with the reason, not 500.
func classify(err error) error {
	if why := unavailable(err); why != "" {
		return fmt.Errorf("%s: %w: %w", why, derrors.ErrUnavailable, err)
	}
	return err
}

// IsUnique reports whether err is a write refused by the unique index
// named index.
func IsUnique(err error, index string) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" && pe.ConstraintName == index
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_CONSTRAINT_UNIQUE: "UNIQUE constraint failed: index 'name'"
		return se.Code() == 2067 && strings.Contains(se.Error(), "index '"+index+"'")
	}
	return false
}

// retryable reports whether err is one the database asks to run again:
// PostgreSQL broke a deadlock between two transactions by failing this
// one, or could not serialise it.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
