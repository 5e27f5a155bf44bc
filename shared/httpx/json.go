package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"syndic/shared/derrors"
)

// MaxBodyBytes is the largest request body any service accepts.
const MaxBodyBytes = 1 << 20

// List is the shape of every list answer.
type List[T any] struct {
	Items []T `json:"items"`
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// DecodeJSON reads one JSON value from r's body into v. It answers
// derrors.ErrUnsupportedMedia for a content type other than application/json,
// derrors.ErrTooLarge for a body over MaxBodyBytes and derrors.Problems (derrors.ErrInvalid) for
// malformed JSON, unknown fields, wrong types or trailing data.
func DecodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return fmt.Errorf("content type %q: want application/json: %w", r.Header.Get("Content-Type"), derrors.ErrUnsupportedMedia)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return decodeError(err)
		}
		return derrors.Problems{"body": "unexpected data after the JSON value"}
	}
	return nil
}

func decodeError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("body over %d bytes: %w", tooLarge.Limit, derrors.ErrTooLarge)
	case errors.As(err, &syntax):
		return derrors.Problems{"body": fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return derrors.Problems{field: fmt.Sprintf("must be a %s, not a JSON %s", typ.Type, typ.Value)}
	case errors.Is(err, io.EOF):
		return derrors.Problems{"body": "empty body: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return derrors.Problems{"body": "malformed JSON: unexpected end of input"}
	}
	return derrors.Problems{"body": err.Error()}
}
