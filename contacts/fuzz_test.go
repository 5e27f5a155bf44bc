package contacts

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// FuzzDecodeInput: any body either gets a clear client error (400, 413 or
// 415 with problems) or decodes to an input whose validation is stable: a
// valid one survives a JSON round trip unchanged.
func FuzzDecodeInput(f *testing.F) {
	f.Add([]byte(`{"name":"Ada Lovelace","email":"ada@example.org","phone":"+44 20"}`))
	f.Add([]byte(`{"name":"<script>","email":"a@b.c"}`))
	f.Add([]byte(`{"name":1}`))
	f.Add([]byte(`{"name":"a","email":"a@example.org"} []`))
	f.Add([]byte(`{"name":"\u0000","email":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/api/contacts", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		var in Input
		if err := httpx.DecodeJSON(r, &in); err != nil {
			if s := httpx.Status(err); s != 400 && s != 413 {
				t.Fatalf("decode error %v answers %d", err, s)
			}
			return
		}
		in = in.Normalize()
		err := in.Validate()
		if err != nil {
			var p derrors.Problems
			if !errors.As(err, &p) || len(p) == 0 || httpx.Status(err) != 400 {
				t.Fatalf("validation error %v is not a 400 with problems", err)
			}
			return
		}
		js, _ := json.Marshal(in)
		var again Input
		if err := json.Unmarshal(js, &again); err != nil || again.Normalize() != in || again.Validate() != nil {
			t.Fatalf("valid input %+v does not round-trip: %+v, %v", in, again, err)
		}
		if derrors.BadText(in.Name) != "" || strings.TrimSpace(in.Name) != in.Name {
			t.Fatalf("validation let %q through", in.Name)
		}
	})
}
