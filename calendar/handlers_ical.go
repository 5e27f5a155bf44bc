package calendar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"syndic/shared/httpx"
)

// icalHandler serves iCal calendars: every appointment, or those of one
// contact ({id}), cancelled ones included so calendar apps drop them.
// The ETag is a hash of the body, so apps polling with If-None-Match get
// 304 until something changes.
// ical's BaseURL is BASE_URL ("": the request's), Host and Organizer as
// the mails' iCal has them.
func icalHandler(log *slog.Logger, store Store, ical ICalOptions, perContact bool) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		q := AppointmentQuery{WithCancelled: true}
		opt := ical
		opt.Name, opt.BaseURL = "syndic calendar", httpx.BaseURL(ical.BaseURL, r)
		if opt.Host == "" {
			opt.Host = uidHost(ical.BaseURL)
		}
		if perContact {
			c, err := pathContact(r, store)
			if err != nil {
				return err
			}
			q.Participant = c.ID
			opt.Name = c.Name + "'s appointments"
		}
		apps, err := store.Appointments(r.Context(), q)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := WriteICal(&b, opt, apps); err != nil {
			return fmt.Errorf("ical: %w", err)
		}
		sum := sha256.Sum256(b.Bytes())
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		h.Set("Content-Type", "text/calendar; charset=utf-8")
		h.Set("Content-Disposition", `inline; filename="calendar.ics"`)
		w.Write(b.Bytes()) // the client went away; nothing to do
		return nil
	})
}

// uidHost is the domain part of event UIDs: stable across requests, so it
// comes from BASE_URL and never from the request; icalDefaultHost without
// one.
func uidHost(baseURL string) string {
	if u, err := url.Parse(baseURL); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return icalDefaultHost
}
