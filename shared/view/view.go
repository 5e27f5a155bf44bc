// Package view renders a service's HTML pages: html/template sets of one
// layout plus one page each, executed into a buffer so an error never
// sends half a page, and error pages that follow httpx's error table.
package view

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"

	"syndic/shared/httpx"
)

// Set holds one template set per page, each parsed with the layout the
// services share (templates/layout.html here) and the service's own
// layout.html, which defines what the shared one leaves to it: "service"
// (its name), "head" (links in <head>), "nav", "footer", and "back" (the
// error page's link home). Every page defines the "title" and "content"
// blocks; the shared "error" page shows .Title and .Message, the shared
// "confirm" page a Confirmation.
type Set struct {
	log   *slog.Logger
	pages map[string]*template.Template
}

// Links are the public URLs of the three services' pages; the shared
// layout links every page to the others. An empty one is not linked.
type Links struct{ Contacts, Calendar, Notifications string }

// Parse reads dir/layout.html and dir/NAME.html for each name from fsys,
// each with the shared layout, and the shared error and confirm pages.
// The layout links to the services in links.
func Parse(log *slog.Logger, fsys fs.FS, dir string, links Links, funcs template.FuncMap, names ...string) (*Set, error) {
	s := &Set{log: log, pages: map[string]*template.Template{}}
	services := template.FuncMap{"services": func() Links { return links }}
	for _, name := range append(names, "error", "confirm") {
		t, err := template.New(name).Funcs(services).Funcs(funcs).ParseFS(shared, "templates/layout.html")
		if err == nil {
			t, err = t.ParseFS(fsys, path.Join(dir, "layout.html"))
		}
		if err == nil && (name == "error" || name == "confirm") {
			t, err = t.ParseFS(shared, "templates/"+name+".html")
		} else if err == nil {
			t, err = t.ParseFS(fsys, path.Join(dir, name+".html"))
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return s, nil
}

// Render answers page with data and status.
func (s *Set) Render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var b bytes.Buffer
	t, ok := s.pages[page]
	if !ok {
		s.log.ErrorContext(r.Context(), "render: no such page", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&b, "layout", data); err != nil {
		s.log.ErrorContext(r.Context(), "render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// Confirmation is the data of the confirm page: it asks before an action
// that destroys or sends something, without JavaScript. Its form posts
// Fields and confirm=yes to Action; Confirmed tells a handler it did.
type Confirmation struct {
	Title, Message string
	Action         string            // where the form posts
	Fields         map[string]string // posted again, e.g. the version
	Submit         string            // the button, e.g. "Delete Ada"
	Back           string            // where "Keep it" goes
}

// Confirmed reports whether a form post is the confirm page's.
func Confirmed(r *http.Request) bool { return r.PostFormValue("confirm") == "yes" }

// Message is the data of the error page.
type Message struct {
	Title   string
	Message string
}

// Error answers err as the error page with the status httpx's table gives.
// notFound, when not empty, is the message for a 404.
func (s *Set) Error(w http.ResponseWriter, r *http.Request, err error, notFound string) {
	status, body := httpx.ErrorResponse(r, s.log, err)
	m := Message{Title: http.StatusText(status), Message: body.Error}
	if status == http.StatusNotFound && notFound != "" {
		m = Message{Title: "Not found", Message: notFound}
	}
	s.Render(w, r, status, "error", m)
}
