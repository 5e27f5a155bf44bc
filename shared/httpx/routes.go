package httpx

import (
	"context"
	"net/http"
)

// Route is one route of a service: a mux pattern, who may use it — "open"
// (anyone), "machine" (the API token or credentials) or "people" (the UI
// password, once set) — and its handler.
type Route struct {
	Pattern string
	Access  string
	Handler http.Handler
}

// On is the route pattern → handler, open to access.
func On(pattern, access string, h http.Handler) Route { return Route{pattern, access, h} }

// Mux serves routes, each behind the guard its Access names.
func (a Access) Mux(routes []Route) *http.ServeMux {
	guard := map[string]func(http.Handler) http.Handler{
		"open": func(h http.Handler) http.Handler { return h }, "machine": a.Machine, "people": a.People}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Pattern, guard[rt.Access](rt.Handler))
	}
	return mux
}

// Ops are the routes every service has for operators: /healthz (alive),
// /readyz (ready: the database answers and is migrated) and /metrics.
func Ops(ready func(context.Context) error, metrics http.Handler) []Route {
	return []Route{
		On("GET /healthz", "open", Healthz()),
		On("GET /readyz", "open", Readyz(ready)),
		On("GET /metrics", "machine", metrics),
	}
}
