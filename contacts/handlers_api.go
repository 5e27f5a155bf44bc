package contacts

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// apiListContacts answers GET /api/contacts?q=&limit=&offset=.
func apiListContacts(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		items, err := store.List(r.Context(), q)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, httpx.List[Contact]{Items: items})
		return nil
	})
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Search: strings.TrimSpace(v.Get("q")), Limit: 100}
	p := derrors.Problems{}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			p.Add("limit", "must be a number from 1 to 1000")
		}
		q.Limit = n
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			p.Add("offset", "must be a number from 0")
		}
		q.Offset = n
	}
	if len(q.Search) > 200 {
		p.Add("q", "must be at most 200 bytes")
	}
	return q, p.Err()
}

// apiGetContact answers GET /api/contacts/{id} with an ETag of its version.
func apiGetContact(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			return err
		}
		c, err := store.Get(r.Context(), id)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusOK, c)
		return nil
	})
}

// apiCreateContact answers POST /api/contacts: 201 with Location.
func apiCreateContact(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		var in Input
		if err := httpx.DecodeJSON(r, &in); err != nil {
			return err
		}
		in = in.Normalize()
		if err := in.Validate(); err != nil {
			return err
		}
		c, err := store.Create(r.Context(), in)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/contacts/"+strconv.FormatInt(c.ID, 10))
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusCreated, c)
		return nil
	})
}

// updateBody is a PUT body: the fields and, unless If-Match carries it,
// the version the change is based on.
type updateBody struct {
	Input
	Version *int64 `json:"version"`
	// Read-only fields a client may send back unchanged.
	ID        *int64  `json:"id"`
	CreatedAt *string `json:"created_at"`
	UpdatedAt *string `json:"updated_at"`
}

// apiUpdateContact answers PUT /api/contacts/{id}. The change must name the
// version it is based on, in If-Match or "version"; a stale one changes
// nothing and answers 412 (If-Match) or 409 (version).
func apiUpdateContact(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			return err
		}
		var body updateBody
		if err := httpx.DecodeJSON(r, &body); err != nil {
			return err
		}
		in := body.Input.Normalize()
		version, ifMatch, err := httpx.CheckUpdate(r, id, body.ID, body.Version, in.Validate())
		if err != nil {
			return err
		}
		c, err := store.Update(r.Context(), id, version, in)
		if err != nil {
			return httpx.StaleAs(err, ifMatch)
		}
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusOK, c)
		return nil
	})
}

// apiDeleteContact answers DELETE /api/contacts/{id} with 204; an If-Match
// makes it conditional (412 when stale).
func apiDeleteContact(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			return err
		}
		version, err := httpx.IfMatchVersion(r)
		if err != nil {
			return err
		}
		if err := store.Delete(r.Context(), id, version); err != nil {
			return httpx.StaleAs(err, true)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// apiImport answers POST /api/contacts/import: a vCard file (text/vcard)
// in, a contact for each valid card, and what was refused, by position.
// 200 even when cards were refused: the body says which and why.
func apiImport(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		if err := vcardType(r); err != nil {
			return err
		}
		res, err := importVCards(w, r, r.Body, store)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, res)
		return nil
	})
}

// importVCards reads a vCard file of at most MaxImportBytes from body and
// imports its cards.
func importVCards(w http.ResponseWriter, r *http.Request, body io.Reader, store Store) (ImportResult, error) {
	ins, refused, err := readVCards(http.MaxBytesReader(w, io.NopCloser(body), MaxImportBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return ImportResult{}, fmt.Errorf("a vCard file of at most %d MB: %w", MaxImportBytes>>20, derrors.ErrTooLarge)
	}
	if err != nil {
		return ImportResult{}, err
	}
	created, taken, err := store.Import(r.Context(), ins)
	if err != nil {
		return ImportResult{}, err
	}
	res := ImportResult{Created: created, Refused: append(refused, taken...)}
	slices.SortFunc(res.Refused, func(a, b ImportRefusal) int { return a.Card - b.Card })
	if res.Refused == nil {
		res.Refused = []ImportRefusal{}
	}
	return res, nil
}

// vcardType is the media type of a vCard (RFC 6350); text/x-vcard and
// text/directory are older names for it.
func vcardType(r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "text/vcard", "text/x-vcard", "text/directory":
		return nil
	}
	return fmt.Errorf("Content-Type %q: want text/vcard: %w", r.Header.Get("Content-Type"), derrors.ErrUnsupportedMedia)
}
