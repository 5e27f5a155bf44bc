package calendar

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/httpx"
)

// apiListAppointments answers GET /api/appointments?from=&participant=&cancelled=true.
func apiListAppointments(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		v := r.URL.Query()
		q := AppointmentQuery{WithCancelled: v.Get("cancelled") == "true"}
		p := derrors.Problems{}
		if s := v.Get("from"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				p.Add("from", "must be an RFC 3339 time")
			}
			q.From = t
		}
		if s := v.Get("participant"); s != "" {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil || id < 1 {
				p.Add("participant", "must be a contact id")
			}
			q.Participant = id
		}
		if err := p.Err(); err != nil {
			return err
		}
		apps, err := store.Appointments(r.Context(), q)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, httpx.List[Appointment]{Items: apps})
		return nil
	})
}

func apiGetAppointment(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "appointment")
		if err != nil {
			return err
		}
		a, err := store.Appointment(r.Context(), id)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", httpx.VersionETag(a.Version))
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	})
}

// decodeInput reads and checks an appointment body.
func decodeInput(r *http.Request, body any, in *Input) error {
	if err := httpx.DecodeJSON(r, body); err != nil {
		return err
	}
	*in = in.Normalize()
	return in.Validate()
}

// apiCreateAppointment answers POST /api/appointments: 201 with Location.
func apiCreateAppointment(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		var in Input
		if err := decodeInput(r, &in, &in); err != nil {
			return err
		}
		a, err := store.Create(r.Context(), in)
		if err != nil {
			return err
		}
		w.Header().Set("Location", fmt.Sprintf("/api/appointments/%d", a.ID))
		w.Header().Set("ETag", httpx.VersionETag(a.Version))
		httpx.WriteJSON(w, http.StatusCreated, a)
		return nil
	})
}

// updateBody is a PUT body: the fields, the version the change is based on
// (unless If-Match carries it), and read-only fields a client may echo.
type updateBody struct {
	Input
	Version   *int64     `json:"version"`
	ID        *int64     `json:"id"`
	Attendees []Attendee `json:"attendees"`
	Status    *string    `json:"status"`
	Created   *string    `json:"created_at"`
	Updated   *string    `json:"updated_at"`
}

// apiUpdateAppointment answers PUT /api/appointments/{id}; a stale version
// answers 412 (If-Match) or 409 (body) and changes nothing.
func apiUpdateAppointment(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "appointment")
		if err != nil {
			return err
		}
		var body updateBody
		err = decodeInput(r, &body, &body.Input) // problems with the fields are answered with those of id and version
		version, ifMatch, err := httpx.CheckUpdate(r, id, body.ID, body.Version, err)
		if err != nil {
			return err
		}
		a, err := store.Update(r.Context(), id, version, body.Input)
		if err != nil {
			return httpx.StaleAs(err, ifMatch)
		}
		w.Header().Set("ETag", httpx.VersionETag(a.Version))
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	})
}

// apiCancelAppointment answers DELETE /api/appointments/{id}: the
// appointment is cancelled (kept, with status "cancelled", so calendar
// apps see the cancellation) and answered 200; If-Match makes it
// conditional.
func apiCancelAppointment(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		id, err := httpx.PathID(r, "appointment")
		if err != nil {
			return err
		}
		version, err := httpx.IfMatchVersion(r)
		if err != nil {
			return err
		}
		a, err := store.Cancel(r.Context(), id, version)
		if err != nil {
			return httpx.StaleAs(err, true)
		}
		w.Header().Set("ETag", httpx.VersionETag(a.Version))
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	})
}

// apiListContacts answers GET /api/contacts: the local copy.
func apiListContacts(log *slog.Logger, store Store) http.Handler {
	return httpx.Handle(log, func(w http.ResponseWriter, r *http.Request) error {
		cs, err := store.Contacts(r.Context())
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, httpx.List[Contact]{Items: cs})
		return nil
	})
}

// apiSync answers GET /api/sync: the follower's status.
func apiSync(sync func() feed.Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusOK, sync())
	})
}
