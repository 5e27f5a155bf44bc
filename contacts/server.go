package contacts

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

// NewServer returns the contacts HTTP handler: the routes on one screen.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, pub *feed.Publisher, m *metrics.Set, access httpx.Access) (http.Handler, error) {
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

	pub.Register(mux, machine)

	mux.Handle("GET /api/contacts", machine(apiListContacts(log, store)))
	mux.Handle("POST /api/contacts", machine(apiCreateContact(log, store)))
	mux.Handle("GET /api/contacts/{id}", machine(apiGetContact(log, store)))
	mux.Handle("PUT /api/contacts/{id}", machine(apiUpdateContact(log, store)))
	mux.Handle("DELETE /api/contacts/{id}", machine(apiDeleteContact(log, store)))
	mux.Handle("/api/", machine(httpx.NotFoundJSON(log)))

	mux.Handle("GET /{$}", people(ps.handleList(store)))
	mux.Handle("GET /contacts/new", people(ps.handleNew()))
	mux.Handle("POST /contacts", people(ps.handleCreate(store)))
	mux.Handle("GET /contacts/{id}", people(ps.handleShow(store)))
	mux.Handle("GET /contacts/{id}/edit", people(ps.handleEdit(store)))
	mux.Handle("POST /contacts/{id}", people(ps.handleUpdate(store)))
	mux.Handle("POST /contacts/{id}/delete", people(ps.handleDelete(store)))

	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure()), nil
}
