package calendar

import (
	"io/fs"
	"log/slog"
	"net/http"

	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
	"syndic/shared/view"
)

// NewServer returns the calendar HTTP handler: the routes of routes, each
// behind the guard its access names. sync reports the contacts follower's
// status.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, sync func() feed.Status, m *metrics.Set, access httpx.Access, baseURL string) (http.Handler, error) {
	ps, err := parsePages(log)
	if err != nil {
		return nil, err
	}
	guard := map[string]func(http.Handler) http.Handler{
		"open": func(h http.Handler) http.Handler { return h }, "machine": access.Machine, "people": access.People}
	mux := http.NewServeMux()
	for _, rt := range routes(log, store, db, sync, m, baseURL, ps) {
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
	for _, rt := range routes(nil, nil, nil, nil, nil, "", pages{}) {
		rs = append(rs, rt.Route)
	}
	return rs
}

type route struct {
	Route
	h http.Handler
}

// routes is the route table: the routes on one screen.
func routes(log *slog.Logger, store Store, db *sqldb.DB, sync func() feed.Status, m *metrics.Set, baseURL string, ps pages) []route {
	static, _ := fs.Sub(assets, "static")
	return []route{
		{Route{"GET /healthz", "open"}, httpx.Healthz()},
		{Route{"GET /readyz", "open"}, httpx.Readyz(db.Ready)},
		{Route{"GET /metrics", "machine"}, m.Handler()},
		{Route{"GET /static/", "open"}, http.StripPrefix("/static/", view.Static(static))},

		{Route{"GET /api/appointments", "machine"}, apiListAppointments(log, store)},
		{Route{"POST /api/appointments", "machine"}, apiCreateAppointment(log, store)},
		{Route{"GET /api/appointments/{id}", "machine"}, apiGetAppointment(log, store)},
		{Route{"PUT /api/appointments/{id}", "machine"}, apiUpdateAppointment(log, store)},
		{Route{"DELETE /api/appointments/{id}", "machine"}, apiCancelAppointment(log, store)},
		{Route{"GET /api/contacts", "machine"}, apiListContacts(log, store)},
		{Route{"GET /api/sync", "machine"}, apiSync(sync)},
		{Route{"/api/", "machine"}, httpx.NotFoundJSON(log)},

		{Route{"GET /calendar.ics", "machine"}, icalHandler(log, store, baseURL, false)},
		{Route{"GET /contacts/{id}/calendar.ics", "machine"}, icalHandler(log, store, baseURL, true)},

		{Route{"GET /{$}", "people"}, ps.handleUpcoming(store)},
		{Route{"GET /appointments/new", "people"}, ps.handleNewAppointment(store)},
		{Route{"POST /appointments", "people"}, ps.handleCreateAppointment(store)},
		{Route{"GET /appointments/{id}", "people"}, ps.handleAppointment(store)},
		{Route{"GET /appointments/{id}/edit", "people"}, ps.handleEditAppointment(store)},
		{Route{"POST /appointments/{id}", "people"}, ps.handleUpdateAppointment(store)},
		{Route{"POST /appointments/{id}/cancel", "people"}, ps.handleCancelAppointment(store)},
		{Route{"GET /contacts", "people"}, ps.handleContacts(store, sync)},
		{Route{"GET /contacts/{id}", "people"}, ps.handleContact(store)},
	}
}
