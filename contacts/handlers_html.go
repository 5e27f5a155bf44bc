package contacts

import (
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
	"syndic/shared/view"
)

//go:embed templates static
var assets embed.FS

// pages renders the contacts pages.
type pages struct{ *view.Set }

func parsePages(log *slog.Logger, links view.Links) (pages, error) {
	set, err := view.Parse(log, assets, "templates", links, nil, "list", "form", "show")
	return pages{set}, err
}

const notFoundMessage = "There is no such contact: it may have been deleted."

type formPage struct {
	Contact  Contact
	Input    Input
	Problems derrors.Problems
	Notice   string
}

const listPageSize = 100

func (ps pages) handleList(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		q.Limit = listPageSize + 1
		items, err := store.List(r.Context(), q)
		if err != nil {
			return err
		}
		v := url.Values{}
		if q.Search != "" {
			v.Set("q", q.Search)
		}
		more := len(items) > listPageSize
		prev, next := view.PageLinks("/", v, q.Offset, listPageSize, more)
		if more {
			items = items[:listPageSize]
		}
		data := map[string]any{"Search": q.Search, "Contacts": items, "Notice": doneNotice(r), "Prev": prev, "Next": next}
		ps.Render(w, r, http.StatusOK, "list", data)
		return nil
	})
}

func (ps pages) handleShow(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		c, err := ps.contact(r, store)
		if err != nil {
			return err
		}
		ps.Render(w, r, http.StatusOK, "show", map[string]any{"Contact": c, "Notice": doneNotice(r)})
		return nil
	})
}

// doneNotice is the message that says what a form just did, from the
// done parameter its redirect carries (one of a fixed few: a link can't
// make the page say anything else).
func doneNotice(r *http.Request) string {
	return view.Done(r, map[string]string{
		"created": "Contact created. Calendar has it in its copy within a moment.",
		"saved":   "Changes saved.",
		"deleted": "Contact deleted.",
	})
}

func (ps pages) contact(r *http.Request, store Store) (Contact, error) {
	id, err := httpx.PathID(r, "contact")
	if err != nil {
		return Contact{}, err
	}
	return store.Get(r.Context(), id)
}

func (ps pages) handleNew() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.Render(w, r, http.StatusOK, "form", formPage{})
	})
}

func (ps pages) handleEdit(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		c, err := ps.contact(r, store)
		if err != nil {
			return err
		}
		ps.Render(w, r, http.StatusOK, "form", formPage{Contact: c, Input: Input{c.Name, c.Email, c.Phone}})
		return nil
	})
}

// formInput reads the posted fields; a body over the limit is ErrTooLarge.
func formInput(r *http.Request) (Input, error) {
	if err := view.ParseForm(r); err != nil {
		return Input{}, err
	}
	in := Input{Name: r.PostFormValue("name"), Email: r.PostFormValue("email"), Phone: r.PostFormValue("phone")}
	return in.Normalize(), nil
}

func (ps pages) handleCreate(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		in, err := formInput(r)
		if err != nil {
			return err
		}
		if err := in.Validate(); err != nil {
			ps.Render(w, r, http.StatusBadRequest, "form", formPage{Input: in, Problems: err.(derrors.Problems)})
			return nil
		}
		c, err := store.Create(r.Context(), in)
		var taken derrors.Problems
		if errors.As(err, &taken) {
			ps.Render(w, r, http.StatusBadRequest, "form", formPage{Input: in, Problems: taken})
			return nil
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, "/contacts/"+strconv.FormatInt(c.ID, 10)+"?done=created", http.StatusSeeOther)
		return nil
	})
}

func (ps pages) handleUpdate(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		current, err := ps.contact(r, store)
		if err != nil {
			return err
		}
		in, err := formInput(r)
		if err != nil {
			return err
		}
		version, verr := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		if verr != nil || version < 1 {
			ps.Render(w, r, http.StatusBadRequest, "form", formPage{Contact: current, Input: in, Problems: derrors.Problems{"version": "The form lacks the version it was based on: reload the page."}})
			return nil
		}
		form := formPage{Contact: current, Input: in}
		form.Contact.Version = version
		if err := in.Validate(); err != nil {
			form.Problems = err.(derrors.Problems)
			ps.Render(w, r, http.StatusBadRequest, "form", form)
			return nil
		}
		c, err := store.Update(r.Context(), current.ID, version, in)
		var stale *StaleError
		if errors.As(err, &stale) {
			form.Contact = stale.Current
			form.Notice = fmt.Sprintf("Someone else changed this contact while you were editing (it is now at version %d: %s). Your changes are below and were not saved; submit again to save them over theirs.", stale.Current.Version, describe(stale.Current))
			ps.Render(w, r, http.StatusConflict, "form", form)
			return nil
		}
		if errors.As(err, &form.Problems) {
			ps.Render(w, r, http.StatusBadRequest, "form", form)
			return nil
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, "/contacts/"+strconv.FormatInt(c.ID, 10)+"?done=saved", http.StatusSeeOther)
		return nil
	})
}

func (ps pages) handleDelete(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			return err
		}
		if err := r.ParseForm(); err != nil {
			return fmt.Errorf("form: %v: %w", err, derrors.ErrInvalid)
		}
		version, err := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		if err != nil || version < 1 {
			return fmt.Errorf("the form lacks the version it was based on: %w", derrors.ErrInvalid)
		}
		if !view.Confirmed(r) {
			c, err := store.Get(r.Context(), id)
			if err != nil {
				return err
			}
			ps.Render(w, r, http.StatusOK, "confirm", view.Confirmation{
				Title:   "Delete " + c.Name + "?",
				Message: fmt.Sprintf("%s (%s) leaves the address book, and calendar removes them from its copy: they get no more invitations. This cannot be undone.", c.Name, c.Email),
				Action:  fmt.Sprintf("/contacts/%d/delete", id),
				Fields:  map[string]string{"version": strconv.FormatInt(version, 10)},
				Submit:  "Delete " + c.Name,
				Back:    fmt.Sprintf("/contacts/%d", id),
			})
			return nil
		}
		err = store.Delete(r.Context(), id, version)
		var stale *StaleError
		if errors.As(err, &stale) {
			ps.Render(w, r, http.StatusConflict, "error", view.Message{
				Title:   "Not deleted",
				Message: fmt.Sprintf("Someone else changed this contact after you opened it (it is now %s). Look at it again before deleting.", describe(stale.Current)),
			})
			return nil
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, "/?done=deleted", http.StatusSeeOther)
		return nil
	})
}

// handleVCard answers GET /contacts/{id}.vcf with the contact's vCard, and
// any other /contacts/{id} with its page.
func (ps pages) handleShowOrVCard(store Store) http.Handler {
	show := ps.handleShow(store)
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		id, ok := strings.CutSuffix(r.PathValue("id"), ".vcf")
		if !ok {
			show.ServeHTTP(w, r)
			return nil
		}
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("contact %q: %w", id, derrors.ErrNotFound)
		}
		c, err := store.Get(r.Context(), n)
		if err != nil {
			return err
		}
		return serveVCard(w, fmt.Sprintf("contact-%d.vcf", c.ID), c)
	})
}

// handleAllVCards answers GET /contacts.vcf: every contact, in name order.
func (ps pages) handleAllVCards(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		var all []Contact
		for {
			page, err := store.List(r.Context(), Query{Limit: importChunk, Offset: len(all)})
			if err != nil {
				return err
			}
			all = append(all, page...)
			if len(page) < importChunk {
				break
			}
		}
		return serveVCard(w, "contacts.vcf", all...)
	})
}

// serveVCard answers the vCards of cs as a file called name.
func serveVCard(w http.ResponseWriter, name string, cs ...Contact) error {
	b, err := vcardBody(cs...)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/vcard; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
	return nil
}

// handleImport imports the vCard file of the list page's form and says
// what it did.
func (ps pages) handleImport(store Store) http.Handler {
	return ps.Handle(notFoundMessage, func(w http.ResponseWriter, r *http.Request) error {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return fmt.Errorf("a vCard file of at most %d MB: %w", MaxImportBytes>>20, derrors.ErrTooLarge)
			}
			return fmt.Errorf("form: %v: %w", err, derrors.ErrInvalid)
		}
		f, _, err := r.FormFile("file")
		if err != nil {
			return fmt.Errorf("choose a vCard file (.vcf) to import: %w", derrors.ErrInvalid)
		}
		defer f.Close()
		res, err := importVCards(w, r, f, store)
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("%d contact%s created.", res.Created, plural(res.Created))
		if len(res.Refused) > 0 {
			var why []string
			for _, x := range res.Refused[:min(len(res.Refused), 20)] {
				why = append(why, fmt.Sprintf("card %d%s: %s", x.Card, nameIn(x.Name), x.Problems.Error()))
			}
			if len(res.Refused) > 20 {
				why = append(why, fmt.Sprintf("and %d more", len(res.Refused)-20))
			}
			msg += fmt.Sprintf(" %d card%s refused — %s.", len(res.Refused), plural(len(res.Refused)), strings.Join(why, "; "))
		}
		ps.Render(w, r, http.StatusOK, "error", view.Message{Title: "Import done", Message: msg})
		return nil
	})
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func nameIn(name string) string {
	if name == "" {
		return ""
	}
	return " (" + name + ")"
}
