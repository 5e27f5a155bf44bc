package contacts

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// apiListContacts answers GET /api/contacts?q=&limit=&offset=.
func apiListContacts(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r)
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		items, err := store.List(r.Context(), q)
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, httpx.List[Contact]{Items: items})
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		c, err := store.Get(r.Context(), id)
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusOK, c)
	})
}

// apiCreateContact answers POST /api/contacts: 201 with Location.
func apiCreateContact(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in Input
		if err := httpx.DecodeJSON(r, &in); err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		in = in.Normalize()
		if err := in.Validate(); err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		c, err := store.Create(r.Context(), in)
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/api/contacts/"+strconv.FormatInt(c.ID, 10))
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusCreated, c)
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		var body updateBody
		if err := httpx.DecodeJSON(r, &body); err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		in := body.Input.Normalize()
		p := derrors.Problems{}
		if err := in.Validate(); err != nil {
			p = err.(derrors.Problems)
		}
		if body.ID != nil && *body.ID != id {
			p.Add("id", fmt.Sprintf("is %d in the body but %d in the URL", *body.ID, id))
		}
		version, ifMatch, err := httpx.BasedOn(r, body.Version)
		if err != nil {
			p.Add("version", err.Error())
		}
		if err := p.Err(); err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		c, err := store.Update(r.Context(), id, version, in)
		if err != nil {
			httpx.WriteError(w, r, log, httpx.StaleAs(err, ifMatch))
			return
		}
		w.Header().Set("ETag", httpx.VersionETag(c.Version))
		httpx.WriteJSON(w, http.StatusOK, c)
	})
}

// apiDeleteContact answers DELETE /api/contacts/{id} with 204; an If-Match
// makes it conditional (412 when stale).
func apiDeleteContact(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			httpx.WriteError(w, r, log, err)
			return
		}
		var version int64
		if r.Header.Get("If-Match") != "" {
			if version, _, err = httpx.BasedOn(r, nil); err != nil {
				httpx.WriteError(w, r, log, derrors.Problems{"If-Match": err.Error()})
				return
			}
		}
		if err := store.Delete(r.Context(), id, version); err != nil {
			httpx.WriteError(w, r, log, httpx.StaleAs(err, true))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
