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

// CheckUpdate checks what a PUT to resource id says besides its fields.
// fieldErr is what checking the fields gave: nil, derrors.Problems (which
// CheckUpdate adds to), or another error, returned as it is. It adds an "id"
// problem when the body echoes an id other than the URL's, and a "version"
// problem when the version the change is based on (see BasedOn) is missing
// or malformed. It returns that version, whether it came from If-Match, and
// all the problems as one derrors.Problems, or nil when there are none.
func CheckUpdate(r *http.Request, id int64, bodyID, bodyVersion *int64, fieldErr error) (version int64, ifMatch bool, err error) {
	p := derrors.Problems{}
	if fieldErr != nil {
		var ok bool
		if p, ok = fieldErr.(derrors.Problems); !ok {
			return 0, false, fieldErr
		}
		if p == nil {
			p = derrors.Problems{}
		}
	}
	if bodyID != nil && *bodyID != id {
		p.Add("id", fmt.Sprintf("is %d in the body but %d in the URL", *bodyID, id))
	}
	version, ifMatch, err = BasedOn(r, bodyVersion)
	if err != nil {
		p.Add("version", err.Error())
	}
	return version, ifMatch, p.Err()
}

// IfMatchVersion returns the version an optional If-Match header names, for
// a conditional DELETE, or 0 without one. A malformed one is
// derrors.Problems{"If-Match": why}.
func IfMatchVersion(r *http.Request) (int64, error) {
	if r.Header.Get("If-Match") == "" {
		return 0, nil
	}
	version, _, err := BasedOn(r, nil)
	if err != nil {
		return 0, derrors.Problems{"If-Match": err.Error()}
	}
	return version, nil
}
