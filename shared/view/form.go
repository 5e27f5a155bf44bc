package view

import (
	"errors"
	"fmt"
	"net/http"

	"syndic/shared/derrors"
)

// ParseForm parses r's form (http.Request.ParseForm). A body over the limit
// of an http.MaxBytesReader wraps derrors.ErrTooLarge; any other parse error
// wraps derrors.ErrInvalid. Either is ready for Set.Error.
func ParseForm(r *http.Request) error {
	err := r.ParseForm()
	if err == nil {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("form over %d bytes: %w", tooLarge.Limit, derrors.ErrTooLarge)
	}
	return fmt.Errorf("form: %v: %w", err, derrors.ErrInvalid)
}
