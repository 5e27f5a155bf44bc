package httpx

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"syndic/shared/derrors"
)

func TestCheckUpdate(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	other := fmt.Errorf("content type: %w", derrors.ErrUnsupportedMedia)
	for _, tc := range []struct {
		name        string
		ifMatch     string
		bodyID      *int64
		bodyVersion *int64
		fieldErr    error
		version     int64
		fromIfMatch bool
		problems    derrors.Problems
		err         error
	}{
		{name: "body version", bodyID: n(7), bodyVersion: n(3), version: 3},
		{name: "If-Match wins", ifMatch: `W/"4"`, bodyVersion: n(3), version: 4, fromIfMatch: true},
		{name: "no version", problems: derrors.Problems{"version": `is required: the version this change is based on (or an If-Match header)`}},
		{name: "other id", bodyID: n(8), bodyVersion: n(3), version: 3, problems: derrors.Problems{"id": "is 8 in the body but 7 in the URL"}},
		{name: "bad If-Match", ifMatch: "x", bodyVersion: n(3), fromIfMatch: true, problems: derrors.Problems{"version": `If-Match "x" is not a version ETag like "3"`}},
		{name: "field problems kept", bodyVersion: n(0), fieldErr: derrors.Problems{"name": "is required"}, problems: derrors.Problems{"name": "is required", "version": "must be 1 or more"}},
		{name: "other error as it is", bodyVersion: n(3), fieldErr: other, err: other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/things/7", nil)
			if tc.ifMatch != "" {
				r.Header.Set("If-Match", tc.ifMatch)
			}
			version, ifMatch, err := CheckUpdate(r, 7, tc.bodyID, tc.bodyVersion, tc.fieldErr)
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if version != tc.version || ifMatch != tc.fromIfMatch {
				t.Errorf("version, ifMatch = %d, %v; want %d, %v", version, ifMatch, tc.version, tc.fromIfMatch)
			}
			if tc.problems == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var p derrors.Problems
			if !errors.As(err, &p) || fmt.Sprint(p) != fmt.Sprint(tc.problems) {
				t.Errorf("err = %v, want %v", err, tc.problems)
			}
		})
	}
}

func TestIfMatchVersion(t *testing.T) {
	for _, tc := range []struct {
		ifMatch string
		version int64
		problem string
	}{
		{"", 0, ""},
		{`"5"`, 5, ""},
		{`W/"5"`, 5, ""},
		{"five", 0, `If-Match "five" is not a version ETag like "3"`},
	} {
		r := httptest.NewRequest("DELETE", "/things/7", nil)
		if tc.ifMatch != "" {
			r.Header.Set("If-Match", tc.ifMatch)
		}
		version, err := IfMatchVersion(r)
		var p derrors.Problems
		switch {
		case tc.problem == "" && (err != nil || version != tc.version):
			t.Errorf("If-Match %q: %d, %v; want %d, nil", tc.ifMatch, version, err, tc.version)
		case tc.problem != "" && (!errors.As(err, &p) || p["If-Match"] != tc.problem):
			t.Errorf("If-Match %q: err = %v, want If-Match problem %q", tc.ifMatch, err, tc.problem)
		}
	}
}
