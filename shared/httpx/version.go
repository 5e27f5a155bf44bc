package httpx

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"syndic/shared/derrors"
)

// PathID parses the {id} path value as a positive integer; anything else is
// derrors.ErrNotFound for what (e.g. "contact").
func PathID(r *http.Request, what string) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%s %q: ids are positive numbers: %w", what, s, derrors.ErrNotFound)
	}
	return id, nil
}

// VersionETag is the ETag of a resource at version v: "3".
func VersionETag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// BasedOn returns the version a change is based on: If-Match ("3" or
// W/"3") wins over the body's version. ifMatch tells which one it came
// from. With neither, or a malformed one, it returns an error for the
// "version" problem.
func BasedOn(r *http.Request, bodyVersion *int64) (version int64, ifMatch bool, err error) {
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
		if err != nil || v < 1 {
			return 0, true, fmt.Errorf("If-Match %q is not a version ETag like \"3\"", im)
		}
		return v, true, nil
	}
	if bodyVersion == nil {
		return 0, false, errors.New(`is required: the version this change is based on (or an If-Match header)`)
	}
	if *bodyVersion < 1 {
		return 0, false, errors.New("must be 1 or more")
	}
	return *bodyVersion, false, nil
}

// StaleAs turns a stale-version conflict into 412 Precondition Failed when
// the version came from If-Match; otherwise it stays a 409.
func StaleAs(err error, ifMatch bool) error {
	if ifMatch && errors.Is(err, derrors.ErrConflict) {
		return fmt.Errorf("%w: %w", err, derrors.ErrPreconditionFailed)
	}
	return err
}
