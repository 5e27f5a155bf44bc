package notifications

import (
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
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, m *metrics.Set, access httpx.Access, breakerState func() string, links view.Links) (http.Handler, error) {
	pages, err := view.Parse(log, assets, "templates", links, nil, "list")
	if err != nil {
		return nil, err
	}
	accept := m.Counter("notifications_accepted", "Notification requests taken (202); a repeated idempotency key is not counted.")
	mux := access.Mux(routes(log, store, db, m, pages, breakerState, func() { accept.Inc(1) }))
	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}

// Route is one route of the service (httpx.Route: pattern, access, handler).
type Route = httpx.Route

// Routes lists every route NewServer serves, for tests that visit them
// all.
func Routes() []Route { return routes(nil, nil, nil, nil, nil, nil, nil) }

// routes is the route table: the routes on one screen. accepted counts a
// notification taken.
func routes(log *slog.Logger, store Store, db *sqldb.DB, m *metrics.Set, pages *view.Set, breakerState func() string, accepted func()) []Route {
	return append(httpx.Ops(db.Ready, m.Handler()),
		view.Static(assets),

		httpx.On("POST /api/notifications", "machine", apiAccept(log, store, accepted)),
		httpx.On("GET /api/notifications", "machine", apiList(log, store)),
		httpx.On("GET /api/notifications/{id}", "machine", apiGet(log, store)),
		httpx.On("/api/", "machine", httpx.NotFoundJSON(log)),

		httpx.On("GET /{$}", "people", htmlList(pages, store, breakerState)),
	)
}
