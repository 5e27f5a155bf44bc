package httpx

import (
	"context"
	"net/http"
	"strings"
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
		h := guard[rt.Access](rt.Handler)
		if !strings.Contains(rt.Pattern, " ") {
			h = allowHeader(mux, h)
		}
		mux.Handle(rt.Pattern, h)
	}
	return mux
}

// allowHeader runs h, a route for every method (a catch-all like /api/),
// with the Allow header set when other routes serve the request's path
// with other methods: h answers 405 then, not 404 (NotFoundJSON does).
func allowHeader(mux *http.ServeMux, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); strings.Contains(pattern, " ") {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
		h.ServeHTTP(w, r)
	})
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
