package notifications

import (
	"embed"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
	"syndic/shared/view"
)

//go:embed templates static
var assets embed.FS

// apiAccept answers POST /api/notifications: 202 once stored (200 with the
// same notification when the Idempotency-Key was seen with the same body;
// 422 when it was seen with another). accepted is called for each new one.
func apiAccept(log *slog.Logger, store Store, accepted func()) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		key, req, err := decodeRequest(r)
		if err != nil {
			return err
		}
		n, created, err := store.Accept(r.Context(), key, req)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/notifications/"+strconv.FormatInt(n.ID, 10))
		if !created {
			httpx.WriteJSON(w, http.StatusOK, n)
			return nil
		}
		accepted()
		httpx.WriteJSON(w, http.StatusAccepted, n)
		return nil
	})
}

// decodeRequest reads a POST /api/notifications: the Idempotency-Key and
// the request, normalised and checked.
func decodeRequest(r *http.Request) (key string, req Request, err error) {
	key = r.Header.Get("Idempotency-Key")
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return "", Request{}, err
	}
	if err := ValidKey(key); err != nil {
		return "", Request{}, err
	}
	req = req.Normalize()
	return key, req, req.Validate()
}

func apiList(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		status := r.URL.Query().Get("status")
		if status != "" && status != StatusPending && status != StatusSent && status != StatusFailed {
			return derrors.Problems{"status": "must be pending, sent or failed"}
		}
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1000 {
				return derrors.Problems{"limit": "must be a number from 1 to 1000"}
			}
			limit = n
		}
		var before int64
		if s := r.URL.Query().Get("before"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 1 {
				return derrors.Problems{"before": "must be a notification id"}
			}
			before = n
		}
		ns, err := store.Page(r.Context(), status, limit, before)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, httpx.List[Notification]{Items: ns})
		return nil
	})
}

func apiGet(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "notification")
		if err != nil {
			return err
		}
		n, err := store.Get(r.Context(), id)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, n)
		return nil
	})
}

// htmlPageSize is how many notifications a page of the list shows.
const htmlPageSize = 100

// htmlList shows the notifications with their status, attempts and last
// error, newest first.
func htmlList(pages *view.Set, store Store, breakerState func() string) http.Handler {
	return pages.Handle("", func(w http.ResponseWriter, r *http.Request) error {
		status := r.URL.Query().Get("status")
		if status != StatusPending && status != StatusSent && status != StatusFailed {
			status = ""
		}
		before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
		ns, err := store.Page(r.Context(), status, htmlPageSize+1, before)
		if err != nil {
			return err
		}
		pending, _ := store.Pending(r.Context())
		data := map[string]any{"Notifications": ns, "Status": status, "Pending": pending, "Breaker": breakerState()}
		if len(ns) > htmlPageSize {
			ns = ns[:htmlPageSize]
			v := url.Values{"before": {strconv.FormatInt(ns[len(ns)-1].ID, 10)}}
			if status != "" {
				v.Set("status", status)
			}
			data["Notifications"], data["Older"] = ns, "/?"+v.Encode()
		}
		if before > 0 {
			newest := "/"
			if status != "" {
				newest += "?status=" + status
			}
			data["Newest"] = newest
		}
		pages.Render(w, r, http.StatusOK, "list", data)
		return nil
	})
}
