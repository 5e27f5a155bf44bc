package servicetest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"syndic/shared/sqldb/sqldbtest"
)

// Main is a service's Main: it reads the environment and runs until ctx
// is done.
type Main func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// CheckHelp checks that main -h prints every variable of vars.
func CheckHelp(t *testing.T, main Main, vars ...string) {
	t.Helper()
	var out bytes.Buffer
	if err := main(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h lacks %s:\n%s", v, out.String())
		}
	}
}

// CheckRefuses checks, for each bad value — a variable's name and its
// value, e.g. {"PORT", "http"} — that main stops at start with
// an error naming the variable. Should a bad value be taken, the service
// starts on a throwaway database and a free port, and the check fails. It
// sets the environment, so the test must not be parallel.
func CheckRefuses(t *testing.T, main Main, bad ...[2]string) {
	t.Helper()
	for _, b := range bad {
		name, value := b[0], b[1]
		t.Run(name+"="+value, func(t *testing.T) {
			t.Setenv("DATABASE_URL", sqldbtest.SQLiteURL(t))
			t.Setenv("PORT", "0")
			t.Setenv(name, value)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := main(ctx, nil, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: err = %v, want one naming %s", name, value, err, name)
			}
		})
	}
}
