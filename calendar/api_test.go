package calendar

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"syndic/shared/httpx"
)

func TestAPI(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	s.seed(t, feedContact{ID: 7, Name: "Ada", Email: "ada@example.org"}, feedContact{ID: 8, Name: "deleted:Bob", Email: "bob@example.org", Version: 2})
	body := map[string]any{"title": "Review", "starts_at": "2030-01-01T09:00:00+01:00", "ends_at": "2030-01-01T10:00:00+01:00", "participants": []int64{7}}
	status, data, h := do(t, "POST", s.URL+"/api/appointments", body)
	if status != 201 || !strings.HasPrefix(h.Get("Location"), "/api/appointments/") {
		t.Fatalf("create: %d %s", status, data)
	}
	var a Appointment
	json.Unmarshal(data, &a)
	if a.StartsAt != "2030-01-01T09:00:00+01:00" || len(a.Attendees) != 1 || a.Attendees[0].Email != "ada@example.org" {
		t.Fatalf("created %+v", a)
	}
	path := fmt.Sprintf("%s/api/appointments/%d", s.URL, a.ID)

	body["title"] = "Review (moved)"
	if status, data, h := do(t, "PUT", path, body, "If-Match", `"1"`); status != 200 || h.Get("ETag") != `"2"` {
		t.Fatalf("update: %d %s", status, data)
	}
	var list httpx.List[Appointment]
	_, data, _ = do(t, "GET", s.URL+"/api/appointments?participant=7", nil)
	if json.Unmarshal(data, &list); len(list.Items) != 1 || list.Items[0].Title != "Review (moved)" {
		t.Fatalf("list: %s", data)
	}
	if status, data, _ := do(t, "DELETE", path, nil, "If-Match", `"2"`); status != 200 || !strings.Contains(string(data), `"status":"cancelled"`) {
		t.Fatalf("cancel: %d %s", status, data)
	}
	_, data, _ = do(t, "GET", s.URL+"/api/appointments", nil)
	if json.Unmarshal(data, &list); len(list.Items) != 0 {
		t.Fatalf("cancelled appointment still listed: %s", data)
	}
	_, data, _ = do(t, "GET", s.URL+"/api/appointments?cancelled=true", nil)
	if json.Unmarshal(data, &list); len(list.Items) != 1 {
		t.Fatalf("cancelled=true: %s", data)
	}
	var contacts httpx.List[Contact]
	_, data, _ = do(t, "GET", s.URL+"/api/contacts", nil)
	if json.Unmarshal(data, &contacts); len(contacts.Items) != 2 || !contacts.Items[1].Deleted {
		t.Fatalf("contacts: %s", data)
	}
	status, data, _ = do(t, "GET", s.URL+"/api/sync", nil)
	var sync map[string]any
	if json.Unmarshal(data, &sync); status != 200 || sync["checkpoint_seq"] == nil || sync["lag"] == nil {
		t.Fatalf("sync: %d %s", status, data)
	}
	if _, ok := sync["last_poll"]; ok { // this calendar's feed is unreachable: never polled
		t.Errorf("sync reports a last_poll time before any poll: %s", data)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	s.seed(t, feedContact{ID: 7, Name: "Ada", Email: "ada@example.org"}, feedContact{ID: 8, Name: "deleted:Bob", Email: "bob@example.org", Version: 2})
	good := func() map[string]any {
		return map[string]any{"title": "Review", "starts_at": "2030-01-01T09:00:00+01:00", "ends_at": "2030-01-01T10:00:00+01:00", "participants": []int64{7}}
	}
	with := func(k string, v any) map[string]any { b := good(); b[k] = v; return b }
	_, data, _ := do(t, "POST", s.URL+"/api/appointments", good())
	var a Appointment
	json.Unmarshal(data, &a)
	path := fmt.Sprintf("/api/appointments/%d", a.ID)
	do(t, "PUT", s.URL+path, with("title", "v2"), "If-Match", `"1"`)

	for _, tc := range []struct {
		name, method, path string
		body               any
		header             []string
		status             int
		problem            string
	}{
		{"malformed JSON", "POST", "/api/appointments", `{"title":`, nil, 400, "body"},
		{"wrong content type", "POST", "/api/appointments", `{}`, []string{"Content-Type", "text/plain"}, 415, ""},
		{"oversized", "POST", "/api/appointments", `{"title":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413, ""},
		{"no title", "POST", "/api/appointments", with("title", ""), nil, 400, "title"},
		{"control character", "POST", "/api/appointments", with("title", "a\x1bb"), nil, 400, "title"},
		{"invisible title", "POST", "/api/appointments", with("title", "\u200B\u200D"), nil, 400, "title"},
		{"bidirectional override", "POST", "/api/appointments", with("title", "Review \u202Efdp.exe"), nil, 400, "title"},
		{"bidirectional isolate in location", "POST", "/api/appointments", with("location", "Room \u2067A"), nil, 400, "location"},
		{"starts in 2001", "POST", "/api/appointments", map[string]any{"title": "Review", "starts_at": "2001-01-01T09:00:00+01:00", "ends_at": "2001-01-01T10:00:00+01:00", "participants": []int64{7}}, nil, 400, "starts_at"},
		{"moved into 2001", "PUT", path, map[string]any{"title": "v2", "starts_at": "2001-01-01T09:00:00+01:00", "ends_at": "2001-01-01T10:00:00+01:00", "participants": []int64{7}, "version": 2}, nil, 400, "starts_at"},
		{"lasts a hundred years", "POST", "/api/appointments", with("ends_at", "2130-01-01T10:00:00+01:00"), nil, 400, "ends_at"},
		{"time without zone", "POST", "/api/appointments", with("starts_at", "2030-01-01T09:00:00"), nil, 400, "starts_at"},
		{"not a time", "POST", "/api/appointments", with("ends_at", "tomorrow"), nil, 400, "ends_at"},
		{"ends before it starts", "POST", "/api/appointments", with("ends_at", "2030-01-01T08:00:00+01:00"), nil, 400, "ends_at"},
		{"same instant", "POST", "/api/appointments", with("ends_at", "2030-01-01T08:00:00Z"), nil, 400, "ends_at"},
		{"unknown participant", "POST", "/api/appointments", with("participants", []int64{7, 999}), nil, 400, "participants"},
		{"deleted participant", "POST", "/api/appointments", with("participants", []int64{8}), nil, 400, "participants"},
		{"participant not a number", "POST", "/api/appointments", with("participants", []string{"x"}), nil, 400, "participants"},
		{"unknown field", "POST", "/api/appointments", with("colour", "red"), nil, 400, "body"},
		{"unknown id", "GET", "/api/appointments/999", nil, nil, 404, ""},
		{"bad id", "GET", "/api/appointments/x", nil, nil, 404, ""},
		{"update without version", "PUT", path, good(), nil, 400, "version"},
		{"stale version", "PUT", path, with("version", 1), nil, 409, ""},
		{"stale If-Match", "PUT", path, good(), []string{"If-Match", `"1"`}, 412, ""},
		{"stale cancel", "DELETE", path, nil, []string{"If-Match", `"1"`}, 412, ""},
		{"bad from", "GET", "/api/appointments?from=yesterday", nil, nil, 400, "from"},
		{"unknown path", "GET", "/api/nothing", nil, nil, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, data, h := do(t, tc.method, s.URL+tc.path, tc.body, tc.header...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, data)
			}
			var e httpx.ErrorBody
			if err := json.Unmarshal(data, &e); err != nil || e.Error == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("error body %s: %v", data, err)
			}
			if tc.problem != "" && e.Problems[tc.problem] == "" {
				t.Errorf("problems %v, want one for %s", e.Problems, tc.problem)
			}
		})
	}
	// Nothing changed.
	_, data, _ = do(t, "GET", s.URL+path, nil)
	var now Appointment
	json.Unmarshal(data, &now)
	if now.Version != 2 || now.Title != "v2" || now.Status != StatusConfirmed {
		t.Errorf("after bad requests: %+v", now)
	}
	do(t, "DELETE", s.URL+path, nil)
	if status, data, _ := do(t, "PUT", s.URL+path, with("version", 3)); status != 409 {
		t.Errorf("update of a cancelled appointment: %d %s, want 409", status, data)
	}
}

func TestAccess(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{Common: configCommon("tok", "pw")})
	for _, tc := range []struct {
		path   string
		header []string
		status int
	}{
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/api/appointments", nil, 401},
		{"/api/sync", nil, 401},
		{"/calendar.ics", nil, 401},
		{"/metrics", nil, 401},
		{"/", nil, 401},
		{"/contacts", nil, 401},
		{"/api/appointments", []string{"Authorization", "Bearer tok"}, 200},
		{"/calendar.ics", []string{"Authorization", "Basic YWRtaW46cHc="}, 200}, // admin:pw
		{"/", []string{"Authorization", "Basic YWRtaW46cHc="}, 200},
		{"/", []string{"Authorization", "Basic YWRtaW46bm8="}, 401},
	} {
		if status, _, _ := do(t, "GET", s.URL+tc.path, nil, tc.header...); status != tc.status {
			t.Errorf("GET %s %v: %d, want %d", tc.path, tc.header, status, tc.status)
		}
	}
}
