package httpx

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"syndic/shared/derrors"
)

// Healthz answers 200 while the process is alive.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz answers 200 when ready reports nil within two seconds, else 503
// with the reason.
func Readyz(ready func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(ctx); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: "not ready: " + err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// NotFoundJSON answers any request it gets with a JSON 404.
func NotFoundJSON(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allow := w.Header().Get("Allow"); allow != "" { // set by Mux: the path is served, not with this method
			WriteError(w, r, log, fmt.Errorf("%s %s: only %s: %w", r.Method, r.URL.Path, allow, derrors.ErrMethodNotAllowed))
			return
		}
		WriteError(w, r, log, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, derrors.ErrNotFound))
	})
}

// Static serves embedded files, cacheable for an hour.
func Static(fsys fs.FS) http.Handler {
	fsrv := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}
