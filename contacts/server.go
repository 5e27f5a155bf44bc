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

// NewServer returns the contacts HTTP handler: the routes of routes, each
// behind the guard its access names.
func NewServer(log *slog.Logger, store Store, db *sqldb.DB, pub *feed.Publisher, m *metrics.Set, access httpx.Access) (http.Handler, error) {
	ps, err := parsePages(log)
	if err != nil {
		return nil, err
	}
	feeds := http.NewServeMux() // the publisher's routes, guarded here
	pub.Register(feeds, func(h http.Handler) http.Handler { return h })
	guard := map[string]func(http.Handler) http.Handler{
		"open": func(h http.Handler) http.Handler { return h }, "machine": access.Machine, "people": access.People}
	mux := http.NewServeMux()
	for _, rt := range routes(log, store, db, feeds, m, ps) {
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
	for _, rt := range routes(nil, nil, nil, nil, nil, pages{}) {
		rs = append(rs, rt.Route)
	}
	return rs
}

type route struct {
	Route
	h http.Handler
}

// routes is the route table: the routes on one screen. feeds serves the
// publisher's pages.
func routes(log *slog.Logger, store Store, db *sqldb.DB, feeds http.Handler, m *metrics.Set, ps pages) []route {
	static, _ := fs.Sub(assets, "static")
	return []route{
		{Route{"GET /healthz", "open"}, httpx.Healthz()},
		{Route{"GET /readyz", "open"}, httpx.Readyz(db.Ready)},
		{Route{"GET /metrics", "machine"}, m.Handler()},
		{Route{"GET /static/", "open"}, http.StripPrefix("/static/", view.Static(static))},

		{Route{"GET /feed", "machine"}, feeds},
		{Route{"GET /feed/archive/{k}", "machine"}, feeds},

		{Route{"GET /api/contacts", "machine"}, apiListContacts(log, store)},
		{Route{"POST /api/contacts", "machine"}, apiCreateContact(log, store)},
		{Route{"GET /api/contacts/{id}", "machine"}, apiGetContact(log, store)},
		{Route{"PUT /api/contacts/{id}", "machine"}, apiUpdateContact(log, store)},
		{Route{"DELETE /api/contacts/{id}", "machine"}, apiDeleteContact(log, store)},
		{Route{"/api/", "machine"}, httpx.NotFoundJSON(log)},

		{Route{"GET /{$}", "people"}, ps.handleList(store)},
		{Route{"GET /contacts/new", "people"}, ps.handleNew()},
		{Route{"POST /contacts", "people"}, ps.handleCreate(store)},
		{Route{"GET /contacts/{id}", "people"}, ps.handleShow(store)},
		{Route{"GET /contacts/{id}/edit", "people"}, ps.handleEdit(store)},
		{Route{"POST /contacts/{id}", "people"}, ps.handleUpdate(store)},
		{Route{"POST /contacts/{id}/delete", "people"}, ps.handleDelete(store)},
	}
}
