package metrics

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPrometheusAndJSON(t *testing.T) {
	t.Parallel()
	m := New()
	m.Counter(`feed_requests{doc="archive"}`).Inc(3)
	m.Counter(`feed_requests{doc="current"}`).Inc(2)
	m.Gauge("lag").Update(7)
	m.Timer("apply").Update(2 * time.Millisecond)
	m.Meter("mails").Mark(4)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"# TYPE syndic_feed_requests counter\n",
		`syndic_feed_requests{doc="archive"} 3`,
		`syndic_feed_requests{doc="current"} 2`,
		"# TYPE syndic_lag gauge\nsyndic_lag 7\n",
		"# TYPE syndic_apply_seconds summary\n",
		`syndic_apply_seconds{quantile="0.5"} 0.002`,
		"syndic_apply_seconds_count 1\n",
		"syndic_mails_total 4\n",
		"syndic_process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Prometheus text lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "# TYPE syndic_feed_requests ") != 1 {
		t.Error("one family got two TYPE lines")
	}

	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics?format=json", nil))
	var js map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &js); err != nil || js["lag"] == nil {
		t.Fatalf("JSON: %v %s", err, rec.Body)
	}
}
