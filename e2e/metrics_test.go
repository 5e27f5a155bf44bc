package e2e

import (
	"net/http"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/metrics/metricstest"
	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
)

// TestMetricsLint: after traffic that touches every metric — feed
// documents current, archived and not modified, a 404, the follower,
// invitations through notifications to SMTP — each service's /metrics
// passes `promtool check metrics` with no complaint, and shows the
// traffic under the names operators sum across replicas.
func TestMetricsLint(t *testing.T) {
	metricstest.Promtool(t) // skip (or fail under CI) before starting anything
	smtp := smtptest.Start(t)
	notif := startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL})
	con := startContacts(t, "", contacts.Config{FeedPageSize: 2})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL})
	capi, kapi := newAPI(t, con.URL), newAPI(t, cal.URL)

	var ids []int64
	for _, name := range []string{"Ada Lovelace", "Grace Hopper", "Hedy Lamarr"} {
		var c contact
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": name, "email": name[:3] + "@example.org"}, &c)
		ids = append(ids, c.ID)
	}
	waitContacts(t, kapi, 3)
	c := freshClient()
	resp, _ := request(t, c, "GET", con.URL+"/feed", "", "")
	request(t, c, "GET", con.URL+"/feed", "", "", func(r *http.Request) { r.Header.Set("If-None-Match", resp.Header.Get("ETag")) })
	request(t, c, "GET", con.URL+"/feed/archive/1", "", "")
	request(t, c, "GET", con.URL+"/feed/archive/1", "", "")
	request(t, c, "GET", con.URL+"/api/contacts/999999", "", "")

	var a calendar.Appointment
	kapi.Must(201, "POST", "/api/appointments", map[string]any{"title": "Metrics review",
		"starts_at": "2027-05-04T10:00:00+02:00", "ends_at": "2027-05-04T11:00:00+02:00", "participants": ids}, &a)
	waitDelivered(t, cal, notif, smtp, 3, 20*time.Second)

	for _, s := range []struct {
		name string
		svc  *service
		want map[string]func(float64) bool // samples the traffic above must show
	}{
		{"contacts", con, map[string]func(float64) bool{
			`syndic_feed_requests_total{doc="current"}`:              atLeast(2),
			`syndic_feed_requests_total{doc="archive"}`:              atLeast(2),
			`syndic_feed_not_modified_total`:                         atLeast(1),
			`syndic_feed_archive_cache_total{result="hit"}`:          atLeast(1),
			`syndic_http_responses_total{code="4xx"}`:                atLeast(1),
			`syndic_http_request_duration_seconds_bucket{le="+Inf"}`: atLeast(8),
			`syndic_http_request_duration_seconds_count`:             atLeast(8),
		}},
		{"calendar", cal, map[string]func(float64) bool{
			`syndic_follower_applied_events_total`:              atLeast(3),
			`syndic_follower_apply_seconds_count`:               atLeast(1),
			`syndic_follower_apply_seconds_bucket{le="60"}`:     atLeast(1),
			`syndic_notify_failed_total`:                        equal(0),
			`syndic_notify_retries_total`:                       equal(0),
			`syndic_notify_sent_total`:                          equal(3),
			`syndic_notify_pending`:                             equal(0),
			`syndic_breaker_opened_total{peer="notifications"}`: equal(0),
		}},
		{"notifications", notif, map[string]func(float64) bool{
			`syndic_notifications_accepted_total`:                     equal(3),
			`syndic_notifications_sent_total`:                         equal(3),
			`syndic_notifications_delivery_seconds_count`:             equal(3),
			`syndic_notifications_delivery_seconds_bucket{le="+Inf"}`: equal(3),
			`syndic_breaker_state{peer="smtp"}`:                       equal(0),
		}},
	} {
		t.Run(s.name, func(t *testing.T) {
			page := metricsPage(t, s.svc.URL)
			metricstest.Check(t, s.name+"/metrics", page)
			m, err := servicetest.Metrics(page)
			if err != nil {
				t.Fatal(err)
			}
			for name, ok := range s.want {
				if v, found := m[name]; !found || !ok(v) {
					t.Errorf("%s = %v (present %v): not what the traffic should have left", name, v, found)
				}
			}
			if t.Failed() {
				t.Logf("%s/metrics:\n%s", s.name, page)
			}
		})
	}
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equal(n float64) func(float64) bool   { return func(v float64) bool { return v == n } }

// metricsPage returns the Prometheus text of base's /metrics.
func metricsPage(t testing.TB, base string) []byte {
	t.Helper()
	resp, page := request(t, http.DefaultClient, "GET", base+"/metrics", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: status %d", base, resp.StatusCode)
	}
	return []byte(page)
}
