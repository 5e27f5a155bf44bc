package servicetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NewRequest makes a request with body: nil for none, a string or []byte
// as is, anything else as JSON. A request with a body says it is
// application/json unless header (name, value pairs, set in order) says
// otherwise.
func NewRequest(method, url string, body any, header ...string) (*http.Request, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req, nil
}

// Send makes one request with c and reads the whole answer; err is a
// transport failure, including a body cut short. The response's body is
// closed.
func Send(c *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// Client is the JSON client of one service that tests use: it sends a
// body as NewRequest does, with the bearer Token when set and whatever Auth
// adds, and fails the test on a transport error.
type Client struct {
	T     testing.TB
	Base  string // http://127.0.0.1:PORT
	HTTP  *http.Client
	Token string                // sent as a bearer token when set
	Auth  func(r *http.Request) // when set, adds credentials to every request
}

// NewClient returns a client of base with a 60 s timeout.
func NewClient(t testing.TB, base string) *Client {
	return &Client{T: t, Base: base, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Do sends body to path with header pairs and returns the answer with its
// body read.
func (c *Client) Do(method, path string, body any, header ...string) (*http.Response, []byte) {
	c.T.Helper()
	req, err := NewRequest(method, c.Base+path, body, header...)
	if err != nil {
		c.T.Fatal(err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Auth != nil {
		c.Auth(req)
	}
	resp, data, err := Send(c.HTTP, req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, data
}

// Call is Do that decodes a 2xx JSON answer into out (nil to ignore) and
// returns the status; with out set, the body of an error status is logged.
func (c *Client) Call(method, path string, body, out any, header ...string) int {
	c.T.Helper()
	resp, data := c.Do(method, path, body, header...)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			c.T.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 400 && out != nil {
		c.T.Logf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return resp.StatusCode
}

// Must is Call that fails the test unless the status is want.
func (c *Client) Must(want int, method, path string, body, out any, header ...string) {
	c.T.Helper()
	if got := c.Call(method, path, body, out, header...); got != want {
		c.T.Fatalf("%s %s: status %d, want %d", method, path, got, want)
	}
}

// Output is a bytes.Buffer safe for one writer and concurrent readers: a
// service's stdout.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Metrics parses a Prometheus text page into its samples by name with
// labels, as in `syndic_breaker_state{peer="smtp"}`.
func Metrics(page []byte) (map[string]float64, error) {
	out := map[string]float64{}
	for _, line := range strings.Split(string(page), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("metrics line %q does not end in a number", line)
		}
		out[line[:i]] = v
	}
	return out, nil
}
