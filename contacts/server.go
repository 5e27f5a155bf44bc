package contacts

import (
	"log/slog"
	"net/http"

	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
	"syndic/shared/view"
)

// NewServer returns the contacts HTTP handler: the routes of routes, each
// behind the guard its access names; every page links to the services in
// links.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, pub *feed.Publisher, m *metrics.Set, access httpx.Access, links view.Links) (http.Handler, error) {
	ps, err := parsePages(log, links)
	if err != nil {
		return nil, err
	}
	feeds := http.NewServeMux() // the publisher's routes, guarded here
	pub.Register(feeds, func(h http.Handler) http.Handler { return h })
	mux := access.Mux(routes(log, store, db, feeds, m, ps))
	return httpx.Chain(mux, httpx.Log(log), m.Middleware, httpx.Secure("/api/contacts/import", "/contacts/import")), nil
}

// Route is one route of the service (httpx.Route: pattern, access, handler).
type Route = httpx.Route

// Routes lists every route NewServer serves, for tests that visit them
// all.
func Routes() []Route { return routes(nil, nil, nil, nil, nil, pages{}) }

// routes is the route table: the routes on one screen. feeds serves the
// publisher's pages.
func routes(log *slog.Logger, store Store, db *sqldb.DB, feeds http.Handler, m *metrics.Set, ps pages) []Route {
	return append(httpx.Ops(db.Ready, m.Handler()),
		view.Static(assets),

		httpx.On("GET /feed", "machine", feeds),
		httpx.On("GET /feed/archive/{k}", "machine", feeds),
		httpx.On("GET /feed/snapshot", "machine", feeds),

		httpx.On("GET /api/contacts", "machine", apiListContacts(log, store)),
		httpx.On("POST /api/contacts", "machine", apiCreateContact(log, store)),
		httpx.On("POST /api/contacts/import", "machine", apiImport(log, store)),
		httpx.On("GET /api/contacts/{id}", "machine", apiGetContact(log, store)),
		httpx.On("PUT /api/contacts/{id}", "machine", apiUpdateContact(log, store)),
		httpx.On("DELETE /api/contacts/{id}", "machine", apiDeleteContact(log, store)),
		httpx.On("/api/", "machine", httpx.NotFoundJSON(log)),

		httpx.On("GET /{$}", "people", ps.handleList(store)),
		httpx.On("GET /contacts/new", "people", ps.handleNew()),
		httpx.On("POST /contacts", "people", ps.handleCreate(store)),
		httpx.On("GET /contacts/{id}", "people", ps.handleShowOrVCard(store)), // {id}.vcf: its vCard
		httpx.On("GET /contacts.vcf", "people", ps.handleAllVCards(store)),
		httpx.On("POST /contacts/import", "people", ps.handleImport(store)),
		httpx.On("GET /contacts/{id}/edit", "people", ps.handleEdit(store)),
		httpx.On("POST /contacts/{id}", "people", ps.handleUpdate(store)),
		httpx.On("POST /contacts/{id}/delete", "people", ps.handleDelete(store)),
	)
}
