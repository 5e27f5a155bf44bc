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

// NewServer returns the notifications HTTP handler: the routes of routes,
// each behind the guard its access names. A notification stored wakes the
// delivery workers through the database's commit signal.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, m *metrics.Set, access httpx.Access, breakerState func() string) (http.Handler, error) {
	pages, err := view.Parse(log, assets, "templates", nil, "list")
	if err != nil {
		return nil, err
	}
	accept := m.Counter("notifications_accepted")
	guard := map[string]func(http.Handler) http.Handler{
		"open": func(h http.Handler) http.Handler { return h }, "machine": access.Machine, "people": access.People}
	mux := http.NewServeMux()
	for _, rt := range routes(log, store, db, m, pages, breakerState, func() { accept.Inc(1) }) {
		mux.Handle(rt.Pattern, guard[rt.Access](rt.h))
	}
	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}

// Route is one route of the service: a mux pattern and who may use it —
// "open" (anyone), "machine" (API token or credentials) or "people" (the
// UI password once set).
type Route struct{ Pattern, Access string }

// Routes lists every route NewServer serves, for tests that visit them
// all.
func Routes() []Route {
	var rs []Route
	for _, rt := range routes(nil, nil, nil, nil, nil, nil, nil) {
		rs = append(rs, rt.Route)
	}
	return rs
}

type route struct {
	Route
	h http.Handler
}

// routes is the route table: the routes on one screen. accepted counts a
// notification taken.
func routes(log *slog.Logger, store Store, db *sqldb.DB, m *metrics.Set, pages *view.Set, breakerState func() string, accepted func()) []route {
	static, _ := fs.Sub(assets, "static")
	return []route{
		{Route{"GET /healthz", "open"}, httpx.Healthz()},
		{Route{"GET /readyz", "open"}, httpx.Readyz(db.Ready)},
		{Route{"GET /metrics", "machine"}, m.Handler()},
		{Route{"GET /static/", "open"}, http.StripPrefix("/static/", view.Static(static))},

		{Route{"POST /api/notifications", "machine"}, apiAccept(log, store, accepted)},
		{Route{"GET /api/notifications", "machine"}, apiList(log, store)},
		{Route{"GET /api/notifications/{id}", "machine"}, apiGet(log, store)},
		{Route{"/api/", "machine"}, httpx.NotFoundJSON(log)},

		{Route{"GET /{$}", "people"}, htmlList(pages, store, breakerState)},
	}
}
