package contacts

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"syndic/shared/httpx"
)

func TestAPI(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{}))
	ada := c.create(Input{Name: " Ada Lovelace ", Email: "ada@example.org"})
	if ada.Name != "Ada Lovelace" {
		t.Errorf("name = %q, want it trimmed", ada.Name)
	}

	resp, body := c.Do("GET", fmt.Sprintf("/api/contacts/%d", ada.ID), nil)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"1"` {
		t.Fatalf("GET: status %d ETag %q: %s", resp.StatusCode, resp.Header.Get("ETag"), body)
	}
	resp, body = c.Do("GET", "/api/contacts?q=lovelace", nil)
	var list httpx.List[Contact]
	if err := json.Unmarshal(body, &list); err != nil || len(list.Items) != 1 || list.Items[0].ID != ada.ID {
		t.Fatalf("search: %s", body)
	}

	// A create answers 201 with Location.
	resp, _ = c.Do("POST", "/api/contacts", Input{Name: "Grace", Email: "grace@example.org"})
	if resp.StatusCode != 201 || !strings.HasPrefix(resp.Header.Get("Location"), "/api/contacts/") {
		t.Fatalf("create: status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Updates based on the current version succeed, by body or If-Match.
	resp, body = c.Do("PUT", fmt.Sprintf("/api/contacts/%d", ada.ID), map[string]any{"name": "Ada Lovelace", "email": "ada@lovelace.org", "version": 1})
	if resp.StatusCode != 200 {
		t.Fatalf("update by version: %d %s", resp.StatusCode, body)
	}
	resp, body = c.Do("PUT", fmt.Sprintf("/api/contacts/%d", ada.ID), Input{Name: "Ada King", Email: "ada@lovelace.org"}, "If-Match", `"2"`)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"3"` {
		t.Fatalf("update by If-Match: %d %s", resp.StatusCode, body)
	}
	resp, _ = c.Do("DELETE", fmt.Sprintf("/api/contacts/%d", ada.ID), nil, "If-Match", `"3"`)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: status %d, want 204", resp.StatusCode)
	}
}

// TestAPIErrors sends every kind of bad request and checks the status, the
// error body, and that nothing changed.
func TestAPIErrors(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{}))
	ada := c.create(Input{Name: "Ada", Email: "ada@example.org"})
	c.Do("PUT", fmt.Sprintf("/api/contacts/%d", ada.ID), Input{Name: "Ada", Email: "ada2@example.org"}, "If-Match", `"1"`)
	id := fmt.Sprintf("/api/contacts/%d", ada.ID)
	bob := fmt.Sprintf("/api/contacts/%d", c.create(Input{Name: "Bob", Email: "bob@example.org"}).ID)
	headBefore := feedHead(t, c)

	for _, tc := range []struct {
		name        string
		method      string
		path        string
		body        any
		header      []string
		status      int
		problemsKey string
	}{
		{"malformed JSON", "POST", "/api/contacts", `{"name": "x",`, nil, 400, "body"},
		{"not an object", "POST", "/api/contacts", `[1,2]`, nil, 400, "body"},
		{"trailing data", "POST", "/api/contacts", `{"name":"A","email":"a@example.org"} {}`, nil, 400, "body"},
		{"unknown field", "POST", "/api/contacts", `{"name":"A","email":"a@example.org","nickname":"x"}`, nil, 400, "body"},
		{"wrong type", "POST", "/api/contacts", `{"name":1,"email":"a@example.org"}`, nil, 400, "name"},
		{"wrong content type", "POST", "/api/contacts", `{"name":"A","email":"a@example.org"}`, []string{"Content-Type", "text/plain"}, 415, ""},
		{"oversized body", "POST", "/api/contacts", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, ""},
		{"missing name", "POST", "/api/contacts", Input{Email: "a@example.org"}, nil, 400, "name"},
		{"long name", "POST", "/api/contacts", Input{Name: strings.Repeat("é", 201), Email: "a@example.org"}, nil, 400, "name"},
		{"control character", "POST", "/api/contacts", Input{Name: "A\x07", Email: "a@example.org"}, nil, 400, "name"},
		{"invisible name", "POST", "/api/contacts", Input{Name: "\u200B", Email: "a@example.org"}, nil, 400, "name"},
		{"bidirectional override", "POST", "/api/contacts", Input{Name: "photo\u202Egnp.exe", Email: "a@example.org"}, nil, 400, "name"},
		{"email of another contact", "POST", "/api/contacts", Input{Name: "Other", Email: "ADA2@example.org"}, nil, 400, "email"},
		{"email of another contact on update", "PUT", bob, map[string]any{"name": "Bob", "email": "Ada2@Example.org", "version": 1}, nil, 400, "email"},
		{"invalid email", "POST", "/api/contacts", Input{Name: "A", Email: "not-an-email"}, nil, 400, "email"},
		{"email with display name", "POST", "/api/contacts", Input{Name: "A", Email: "A <a@example.org>"}, nil, 400, "email"},
		{"bad phone", "POST", "/api/contacts", Input{Name: "A", Email: "a@example.org", Phone: "call me"}, nil, 400, "phone"},
		{"unknown id", "GET", "/api/contacts/99999", nil, nil, 404, ""},
		{"non-numeric id", "GET", "/api/contacts/abc", nil, nil, 404, ""},
		{"unknown id update", "PUT", "/api/contacts/99999", map[string]any{"name": "A", "email": "a@example.org", "version": 1}, nil, 404, ""},
		{"unknown id delete", "DELETE", "/api/contacts/99999", nil, nil, 404, ""},
		{"update without version", "PUT", id, Input{Name: "A", Email: "a@example.org"}, nil, 400, "version"},
		{"stale version", "PUT", id, map[string]any{"name": "A", "email": "a@example.org", "version": 1}, nil, 409, ""},
		{"stale If-Match", "PUT", id, Input{Name: "A", Email: "a@example.org"}, []string{"If-Match", `"1"`}, 412, ""},
		{"bad If-Match", "PUT", id, Input{Name: "A", Email: "a@example.org"}, []string{"If-Match", `"abc"`}, 400, "version"},
		{"stale delete", "DELETE", id, nil, []string{"If-Match", `"1"`}, 412, ""},
		{"id mismatch", "PUT", id, map[string]any{"id": 12345, "name": "A", "email": "a@example.org", "version": 2}, nil, 400, "id"},
		{"bad limit", "GET", "/api/contacts?limit=0", nil, nil, 400, "limit"},
		{"unknown API path", "GET", "/api/nothing", nil, nil, 404, ""},
		{"method not served", "PATCH", id, Input{Name: "A", Email: "a@example.org"}, nil, 405, ""},
		{"method not served on the list", "DELETE", "/api/contacts", nil, nil, 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.Do(tc.method, tc.path, tc.body, tc.header...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type = %q, want JSON", ct)
			}
			var e httpx.ErrorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("error body %s: %v", body, err)
			}
			if tc.problemsKey != "" && e.Problems[tc.problemsKey] == "" {
				t.Errorf("problems = %v, want one for %q", e.Problems, tc.problemsKey)
			}
		})
	}
	if resp, _ := c.Do("PATCH", id, Input{Name: "A", Email: "a@example.org"}); resp.Header.Get("Allow") != "GET, HEAD, PUT, DELETE" {
		t.Errorf("405 Allow = %q, want the methods the path is served with", resp.Header.Get("Allow"))
	}
	// Nothing was lost or changed by the bad requests.
	resp, body := c.Do("GET", id, nil)
	var now Contact
	json.Unmarshal(body, &now)
	if resp.StatusCode != 200 || now.Version != 2 || now.Name != "Ada" || now.Email != "ada2@example.org" {
		t.Errorf("after bad requests the contact is %+v", now)
	}
	if head := feedHead(t, c); head != headBefore {
		t.Errorf("feed head moved from %d to %d on bad requests", headBefore, head)
	}
}

// feedHead reads the highest seq in /feed.
func feedHead(t *testing.T, c *client) int64 {
	t.Helper()
	p := readPage(t, c, "/feed")
	if len(p.Events) == 0 {
		return 0
	}
	return p.Events[len(p.Events)-1].Seq
}

func TestAccess(t *testing.T) {
	t.Parallel()
	base := runService(t, Config{Common: configCommon("s3cret-token", "hunter2")})
	for _, tc := range []struct {
		path   string
		auth   func(*http.Request)
		status int
	}{
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/api/contacts", nil, 401},
		{"/feed", nil, 401},
		{"/metrics", nil, 401},
		{"/", nil, 401},
		{"/api/contacts", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret-token") }, 200},
		{"/api/contacts", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }, 401},
		{"/feed", func(r *http.Request) { r.SetBasicAuth("admin", "hunter2") }, 200},
		{"/feed", func(r *http.Request) { r.SetBasicAuth("admin", "wrong") }, 401},
		{"/metrics", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret-token") }, 200},
		{"/", func(r *http.Request) { r.SetBasicAuth("admin", "hunter2") }, 200},
		{"/", func(r *http.Request) { r.SetBasicAuth("root", "hunter2") }, 401},
	} {
		req, _ := http.NewRequest("GET", base+tc.path, nil)
		if tc.auth != nil {
			tc.auth(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (auth %v): status %d, want %d", tc.path, tc.auth != nil, resp.StatusCode, tc.status)
		}
		if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s: 401 without WWW-Authenticate", tc.path)
		}
	}
}
