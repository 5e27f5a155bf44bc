package notifications

import (
	"io/fs"
	"log/slog"
	"net/http"

	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
	"syndic/shared/view"
)

// NewServer returns the notifications HTTP handler. A notification stored
// wakes the delivery workers through the database's commit signal.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, m *metrics.Set, access httpx.Access, breakerState func() string) (http.Handler, error) {
	pages, err := view.Parse(log, assets, "templates", nil, "list")
	if err != nil {
		return nil, err
	}
	machine, people := access.Machine, access.People
	static, _ := fs.Sub(assets, "static")
	accept := m.Counter("notifications_accepted")

	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpx.Healthz())
	mux.Handle("GET /readyz", httpx.Readyz(db.Ready))
	mux.Handle("GET /metrics", machine(m.Handler()))
	mux.Handle("GET /static/", http.StripPrefix("/static/", view.Static(static)))

	mux.Handle("POST /api/notifications", machine(apiAccept(log, store, func() { accept.Inc(1) })))
	mux.Handle("GET /api/notifications", machine(apiList(log, store)))
	mux.Handle("GET /api/notifications/{id}", machine(apiGet(log, store)))
	mux.Handle("/api/", machine(httpx.NotFoundJSON(log)))

	mux.Handle("GET /{$}", people(htmlList(pages, store, breakerState)))

	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}
