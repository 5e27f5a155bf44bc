package contacts

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"syndic/shared/httpx"
)

//go:embed templates static
var assets embed.FS

// pages holds one template set per page, each with the layout.
type pages map[string]*template.Template

func parsePages() (pages, error) {
	ps := pages{}
	for _, name := range []string{"list", "form", "show", "error"} {
		t, err := template.ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		ps[name] = t
	}
	return ps, nil
}

// render executes page into a buffer first, so a template error never
// sends half a page.
func (ps pages) render(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, page string, data any) {
	var b bytes.Buffer
	if err := ps[page].ExecuteTemplate(&b, "layout", data); err != nil {
		log.ErrorContext(r.Context(), "render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// renderError shows err as a page with the status the error table gives.
func (ps pages) renderError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := httpx.ErrorResponse(r, log, err)
	title := http.StatusText(status)
	msg := body.Error
	if status == http.StatusNotFound {
		title, msg = "Not found", "There is no such contact: it may have been deleted."
	}
	ps.render(w, r, log, status, "error", map[string]any{"Title": title, "Message": msg})
}

type formPage struct {
	Contact  Contact
	Input    Input
	Problems httpx.Problems
	Notice   string
}

const listPageSize = 100

func (ps pages) handleList(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		q.Limit = listPageSize + 1
		items, err := store.List(r.Context(), q)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		link := func(offset int) string {
			v := url.Values{}
			if q.Search != "" {
				v.Set("q", q.Search)
			}
			if offset > 0 {
				v.Set("offset", strconv.Itoa(offset))
			}
			if len(v) == 0 {
				return "/"
			}
			return "/?" + v.Encode()
		}
		data := map[string]any{"Search": q.Search, "Contacts": items}
		if len(items) > listPageSize {
			data["Contacts"] = items[:listPageSize]
			data["Next"] = link(q.Offset + listPageSize)
		}
		if q.Offset > 0 {
			data["Prev"] = link(max(0, q.Offset-listPageSize))
		}
		ps.render(w, r, log, http.StatusOK, "list", data)
	})
}

func (ps pages) handleShow(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ps.contact(r, store)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		ps.render(w, r, log, http.StatusOK, "show", map[string]any{"Contact": c})
	})
}

func (ps pages) contact(r *http.Request, store Store) (Contact, error) {
	id, err := pathID(r)
	if err != nil {
		return Contact{}, err
	}
	return store.Get(r.Context(), id)
}

func (ps pages) handleNew(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.render(w, r, log, http.StatusOK, "form", formPage{})
	})
}

func (ps pages) handleEdit(log *slog.Logger, store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ps.contact(r, store)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		ps.render(w, r, log, http.StatusOK, "form", formPage{Contact: c, Input: Input{c.Name, c.Email, c.Phone}})
	})
}

// formInput reads the posted fields; a body over the limit is ErrTooLarge.
func formInput(r *http.Request) (Input, error) {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return Input{}, fmt.Errorf("form over %d bytes: %w", tooLarge.Limit, httpx.ErrTooLarge)
		}
		return Input{}, fmt.Errorf("form: %v: %w", err, httpx.ErrInvalid)
	}
	in := Input{Name: r.PostFormValue("name"), Email: r.PostFormValue("email"), Phone: r.PostFormValue("phone")}
	return in.Normalize(), nil
}

func (ps pages) handleCreate(log *slog.Logger, store Store, changed func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := formInput(r)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		if err := in.Validate(); err != nil {
			ps.render(w, r, log, http.StatusBadRequest, "form", formPage{Input: in, Problems: err.(httpx.Problems)})
			return
		}
		c, err := store.Create(r.Context(), in)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		changed()
		http.Redirect(w, r, "/contacts/"+strconv.FormatInt(c.ID, 10), http.StatusSeeOther)
	})
}

func (ps pages) handleUpdate(log *slog.Logger, store Store, changed func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current, err := ps.contact(r, store)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		in, err := formInput(r)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		version, verr := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		if verr != nil || version < 1 {
			ps.render(w, r, log, http.StatusBadRequest, "form", formPage{Contact: current, Input: in, Problems: httpx.Problems{"version": "The form lacks the version it was based on: reload the page."}})
			return
		}
		form := formPage{Contact: current, Input: in}
		form.Contact.Version = version
		if err := in.Validate(); err != nil {
			form.Problems = err.(httpx.Problems)
			ps.render(w, r, log, http.StatusBadRequest, "form", form)
			return
		}
		c, err := store.Update(r.Context(), current.ID, version, in)
		var stale *StaleError
		if errors.As(err, &stale) {
			form.Contact = stale.Current
			form.Notice = fmt.Sprintf("Someone else changed this contact while you were editing (it is now at version %d: %s). Your changes are below and were not saved; submit again to save them over theirs.", stale.Current.Version, describe(stale.Current))
			ps.render(w, r, log, http.StatusConflict, "form", form)
			return
		}
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		changed()
		http.Redirect(w, r, "/contacts/"+strconv.FormatInt(c.ID, 10), http.StatusSeeOther)
	})
}

func (ps pages) handleDelete(log *slog.Logger, store Store, changed func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			ps.renderError(w, r, log, err)
			return
		}
		if err := r.ParseForm(); err != nil {
			ps.renderError(w, r, log, fmt.Errorf("form: %v: %w", err, httpx.ErrInvalid))
			return
		}
		version, err := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		if err != nil || version < 1 {
			ps.renderError(w, r, log, fmt.Errorf("the form lacks the version it was based on: %w", httpx.ErrInvalid))
			return
		}
		if err := store.Delete(r.Context(), id, version); err != nil {
			var stale *StaleError
			if errors.As(err, &stale) {
				ps.render(w, r, log, http.StatusConflict, "error", map[string]any{
					"Title":   "Not deleted",
					"Message": fmt.Sprintf("Someone else changed this contact after you opened it (it is now %s). Look at it again before deleting.", describe(stale.Current)),
				})
				return
			}
			ps.renderError(w, r, log, err)
			return
		}
		changed()
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}
