package notifications

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"syndic/shared/smtptest"
)

// icsPart is a minimal iCal part as calendar sends: method, sequence, URL.
func icsPart(method string, seq int, link string) string {
	lines := []string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "METHOD:" + method,
		"BEGIN:VEVENT", "UID:appointment-1@test", "DTSTAMP:20301231T090000Z", "DTSTART:20301231T090000Z",
		"SEQUENCE:" + string(rune('0'+seq)), "SUMMARY:Review"}
	if link != "" {
		lines = append(lines, "URL:"+link)
	}
	lines = append(lines, "END:VEVENT", "END:VCALENDAR", "")
	return strings.Join(lines, "\r\n")
}

// TestListSaysWhatEachMailIs: the list names each calendar mail an
// invitation, a change or a cancellation, and links it to its appointment.
func TestListSaysWhatEachMailIs(t *testing.T) {
	t.Parallel()
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL})
	link := "http://calendar.example/appointments/1"
	for key, req := range map[string]Request{
		"k-invite": {To: "a@example.org", Subject: "Invitation: Review", Text: "t", Calendar: icsPart("REQUEST", 0, link)},
		"k-change": {To: "a@example.org", Subject: "Changed: Review", Text: "t", Calendar: icsPart("REQUEST", 2, link)},
		"k-cancel": {To: "a@example.org", Subject: "Cancelled: Review", Text: "t", Calendar: icsPart("CANCEL", 3, "javascript:alert(1)")},
		"k-plain":  {To: "a@example.org", Subject: "Hello", Text: "t"},
	} {
		n := s.accept(t, key, req)
		s.waitStatus(t, n.ID, StatusSent, 10*time.Second)
	}
	page := s.page(t, "/")
	for _, want := range []string{
		`<span class="kind kind-invitation">invitation</span> <a href="http://calendar.example/appointments/1">Invitation: Review</a>`,
		`<span class="kind kind-change">change</span> <a href="http://calendar.example/appointments/1">Changed: Review</a>`,
		`<span class="kind kind-cancellation">cancellation</span> Cancelled: Review`, // not a web link: no link
		`<td class="to">a@example.org</td><td>Hello</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the list lacks %s", want)
		}
	}
	if strings.Contains(page, "javascript:") {
		t.Error("a javascript: URL became a link")
	}
}

// TestListPages: the list shows 100 a page, newest first, and pages on by
// the last id shown; the API takes the same ?before.
func TestListPages(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{SMTPURL: smtptest.Start(t).URL})
	var last Notification
	for i := range htmlPageSize + 5 {
		last = s.accept(t, fmt.Sprintf("page-%d", i), Request{To: "a@example.org", Subject: fmt.Sprintf("Note %d", i), Text: "t"})
	}
	first := s.page(t, "/")
	if n := strings.Count(first, `<td class="id">`); n != htmlPageSize || !strings.Contains(first, fmt.Sprintf(">%d</td>", last.ID)) {
		t.Fatalf("first page: %d rows, want %d from the newest", n, htmlPageSize)
	}
	older := fmt.Sprintf(`/?before=%d`, last.ID-htmlPageSize+1)
	if !strings.Contains(first, `href="`+older+`" rel="next"`) {
		t.Fatalf("first page lacks the link to %s", older)
	}
	if second := s.page(t, older); strings.Count(second, `<td class="id">`) != 5 || !strings.Contains(second, "← Newest") {
		t.Fatal("second page: want the 5 oldest and a link back")
	}
	if got := s.list(t, fmt.Sprintf("?before=%d&limit=3", last.ID)); len(got) != 3 || got[0].ID != last.ID-1 {
		t.Fatalf("API ?before: %+v", got)
	}
}
