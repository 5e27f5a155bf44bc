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

// NewServer returns the calendar HTTP handler: the routes on one screen.
// sync reports the contacts follower's status.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, sync func() feed.Status, m *metrics.Set, access httpx.Access, baseURL string) (http.Handler, error) {
	ps, err := parsePages(log)
	if err != nil {
		return nil, err
	}
	machine, people := access.Machine, access.People
	static, _ := fs.Sub(assets, "static")

	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpx.Healthz())
	mux.Handle("GET /readyz", httpx.Readyz(db.Ready))
	mux.Handle("GET /metrics", machine(m.Handler()))
	mux.Handle("GET /static/", http.StripPrefix("/static/", view.Static(static)))

	mux.Handle("GET /api/appointments", machine(apiListAppointments(log, store)))
	mux.Handle("POST /api/appointments", machine(apiCreateAppointment(log, store)))
	mux.Handle("GET /api/appointments/{id}", machine(apiGetAppointment(log, store)))
	mux.Handle("PUT /api/appointments/{id}", machine(apiUpdateAppointment(log, store)))
	mux.Handle("DELETE /api/appointments/{id}", machine(apiCancelAppointment(log, store)))
	mux.Handle("GET /api/contacts", machine(apiListContacts(log, store)))
	mux.Handle("GET /api/sync", machine(apiSync(sync)))
	mux.Handle("/api/", machine(httpx.NotFoundJSON(log)))

	mux.Handle("GET /calendar.ics", machine(icalHandler(log, store, baseURL, false)))
	mux.Handle("GET /contacts/{id}/calendar.ics", machine(icalHandler(log, store, baseURL, true)))

	mux.Handle("GET /{$}", people(ps.handleUpcoming(store)))
	mux.Handle("GET /appointments/new", people(ps.handleNewAppointment(store)))
	mux.Handle("POST /appointments", people(ps.handleCreateAppointment(store)))
	mux.Handle("GET /appointments/{id}", people(ps.handleAppointment(store)))
	mux.Handle("GET /appointments/{id}/edit", people(ps.handleEditAppointment(store)))
	mux.Handle("POST /appointments/{id}", people(ps.handleUpdateAppointment(store)))
	mux.Handle("POST /appointments/{id}/cancel", people(ps.handleCancelAppointment(store)))
	mux.Handle("GET /contacts", people(ps.handleContacts(store, sync)))
	mux.Handle("GET /contacts/{id}", people(ps.handleContact(store)))

	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}
