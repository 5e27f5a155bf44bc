package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Access holds the credentials a service accepts: a bearer token for
// programs (API_TOKEN) and HTTP Basic for people and feed readers
// (UI_USER/UI_PASSWORD). Empty fields are not configured.
type Access struct {
	Token    string
	User     string
	Password string
}

// Authorize adds these credentials to a request this service makes of
// another (they share API_TOKEN): the bearer token, else Basic with
// User/Password, else nothing.
func (a Access) Authorize(r *http.Request) {
	switch {
	case a.Token != "":
		r.Header.Set("Authorization", "Bearer "+a.Token)
	case a.Password != "":
		r.SetBasicAuth(a.User, a.Password)
	}
}

// Configured reports whether any credential is set; without one a service
// listens on loopback only.
func (a Access) Configured() bool { return a.Token != "" || a.Password != "" }

// Machine guards the API, feeds and metrics: once any credential is
// configured, a request needs the bearer token or valid Basic credentials.
func (a Access) Machine(h http.Handler) http.Handler {
	if !a.Configured() {
		return h
	}
	return a.require(h, true)
}

// People guards the HTML pages: with UI_PASSWORD set they need Basic
// credentials (the bearer token is accepted too).
func (a Access) People(h http.Handler) http.Handler {
	if a.Password == "" {
		return h
	}
	return a.require(h, false)
}

func (a Access) require(h http.Handler, jsonErrors bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.allows(r) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="syndic", charset="UTF-8"`)
		if jsonErrors {
			WriteJSON(w, http.StatusUnauthorized, ErrorBody{Error: "authentication required: Authorization: Bearer <API_TOKEN> or HTTP Basic"})
			return
		}
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})
}

func (a Access) allows(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
		return a.Token != "" && same(tok, a.Token)
	}
	if user, pass, ok := r.BasicAuth(); ok {
		return a.Password != "" && same(user, a.User) && same(pass, a.Password)
	}
	return false
}

// same compares in constant time, whatever the lengths.
func same(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// WarnAccess logs what the access settings leave open.
func WarnAccess(log interface{ Warn(string, ...any) }, a Access) {
	switch {
	case !a.Configured():
		log.Warn("no API_TOKEN or UI_PASSWORD set: listening on loopback only; set them to serve other hosts")
	case a.Password == "":
		log.Warn("UI_PASSWORD not set: the HTML pages are open to anyone who can reach the port")
	}
}
