package calendar

import (
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
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, sync func() feed.Status, m *metrics.Set, access httpx.Access, ical ICalOptions, links view.Links) (http.Handler, error) {
	ps, err := parsePages(log, links)
	if err != nil {
		return nil, err
	}
	mux := access.Mux(routes(log, store, db, sync, m, ical, ps))
	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}

// Route is one route of the service (httpx.Route: pattern, access, handler).
type Route = httpx.Route

// Routes lists every route NewServer serves, for tests that visit them
// all.
func Routes() []Route { return routes(nil, nil, nil, nil, nil, ICalOptions{}, pages{}) }

// routes is the route table: the routes on one screen.
func routes(log *slog.Logger, store Store, db *sqldb.DB, sync func() feed.Status, m *metrics.Set, ical ICalOptions, ps pages) []Route {
	return append(httpx.Ops(db.Ready, m.Handler()),
		view.Static(assets),

		httpx.On("GET /api/appointments", "machine", apiListAppointments(log, store)),
		httpx.On("POST /api/appointments", "machine", apiCreateAppointment(log, store)),
		httpx.On("GET /api/appointments/{id}", "machine", apiGetAppointment(log, store)),
		httpx.On("PUT /api/appointments/{id}", "machine", apiUpdateAppointment(log, store)),
		httpx.On("DELETE /api/appointments/{id}", "machine", apiCancelAppointment(log, store)),
		httpx.On("GET /api/contacts", "machine", apiListContacts(log, store)),
		httpx.On("GET /api/sync", "machine", apiSync(sync)),
		httpx.On("/api/", "machine", httpx.NotFoundJSON(log)),

		httpx.On("GET /calendar.ics", "machine", icalHandler(log, store, ical, false)),
		httpx.On("GET /contacts/{id}/calendar.ics", "machine", icalHandler(log, store, ical, true)),

		httpx.On("GET /{$}", "people", ps.handleUpcoming(store)),
		httpx.On("GET /appointments/new", "people", ps.handleNewAppointment(store)),
		httpx.On("POST /appointments", "people", ps.handleCreateAppointment(store)),
		httpx.On("GET /appointments/{id}", "people", ps.handleAppointment(store)),
		httpx.On("GET /appointments/{id}/edit", "people", ps.handleEditAppointment(store)),
		httpx.On("POST /appointments/{id}", "people", ps.handleUpdateAppointment(store)),
		httpx.On("POST /appointments/{id}/cancel", "people", ps.handleCancelAppointment(store)),
		httpx.On("GET /contacts", "people", ps.handleContacts(store, sync)),
		httpx.On("GET /contacts/{id}", "people", ps.handleContact(store)),
	)
}
