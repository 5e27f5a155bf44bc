// Package metricstest checks a /metrics page the way Prometheus's own
// linter does: `promtool check metrics`.
package metricstest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// Promtool returns the path of promtool (Debian's prometheus package). Without
// it the test is skipped, or fails under CI=true, where the check must run.
func Promtool(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed and CI=true: the /metrics lint must run in CI (apt-get install prometheus)")
		}
		t.Skip("promtool not installed: skipping the /metrics lint")
	}
	return path
}

// Check runs `promtool check metrics` on page, a Prometheus text page
// that name says where it came from, and fails t with each problem
// promtool reports.
func Check(t testing.TB, name string, page []byte) {
	t.Helper()
	cmd := exec.Command(Promtool(t), "check", "metrics")
	cmd.Stdin = bytes.NewReader(page)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on %s: %v\n%s", name, err, out)
	}
}
