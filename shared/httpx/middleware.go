package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies ms so that the first one is outermost.
func Chain(h http.Handler, ms ...Middleware) http.Handler {
	for i := len(ms) - 1; i >= 0; i-- {
		h = ms[i](h)
	}
	return h
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the id the Log middleware gave the request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Recorder wraps a ResponseWriter to remember the status and size written.
type Recorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// WriteHeader records the status.
func (rec *Recorder) WriteHeader(status int) {
	if rec.Status == 0 {
		rec.Status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

// Write records the size.
func (rec *Recorder) Write(p []byte) (int, error) {
	if rec.Status == 0 {
		rec.Status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *Recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// Log gives each request an id (a sane incoming X-Request-Id is kept), echoes
// it in the response, and logs one JSON line per request: method, path,
// status, size, duration. Bodies, query strings and headers are never logged.
// A panic in h is logged and answered 500.
func Log(log *slog.Logger) Middleware {
	ids := newIDs()
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := r.Header.Get("X-Request-Id")
			if !saneID(id) {
				id = ids.next()
			}
			w.Header().Set("X-Request-Id", id)
			r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
			rec := &Recorder{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.ErrorContext(r.Context(), "panic", "request_id", id, "panic", fmt.Sprint(p))
					if rec.Status == 0 {
						http.Error(rec, "internal error", http.StatusInternalServerError)
					}
				}
				level := slog.LevelInfo
				if rec.Status >= 500 {
					level = slog.LevelError
				}
				log.LogAttrs(r.Context(), level, "request",
					slog.String("request_id", id),
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", rec.Status),
					slog.Int64("bytes", rec.Bytes),
					slog.Float64("ms", float64(time.Since(start).Microseconds())/1000),
				)
			}()
			h.ServeHTTP(rec, r)
		})
	}
}

func saneID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// idSource makes request ids: a random prefix per process and a counter,
// unique without a system call per request.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDs() *idSource {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &idSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (s *idSource) next() string { return s.prefix + strconv.FormatUint(s.n.Add(1), 36) }

// MaxBulkBytes is the largest body of a bulk path (an import file).
const MaxBulkBytes = 32 << 20

// Secure sets security headers, limits request bodies to MaxBodyBytes —
// MaxBulkBytes on the bulk paths — and refuses cross-origin unsafe
// requests (CSRF) with http.CrossOriginProtection.
func Secure(bulk ...string) Middleware {
	cop := http.NewCrossOriginProtection()
	return func(h http.Handler) http.Handler {
		h = cop.Handler(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("X-Frame-Options", "DENY")
			hd.Set("Referrer-Policy", "same-origin")
			hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
			if r.Body != nil {
				limit := int64(MaxBodyBytes)
				if slices.Contains(bulk, r.URL.Path) {
					limit = MaxBulkBytes
				}
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			h.ServeHTTP(w, r)
		})
	}
}
