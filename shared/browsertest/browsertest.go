// Package browsertest starts headless Chromium (Debian's chromium) for the
// services' browser tests, driven with chromedp.
package browsertest

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns the path of a Chromium binary, or "" when there is
// none: Debian's /usr/bin/chromium first, then chromium or
// chromium-browser on PATH.
func findChromium() string {
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// chromiumOptions returns the allocator options for a headless Chromium at
// execPath with a fresh profile in userDataDir, fit to run as root on a
// closed network: no sandbox, no GPU, no QUIC, and none of the background
// fetches (updates, sync, first-run pages) that would wait on the network.
func chromiumOptions(execPath, userDataDir string) []chromedp.ExecAllocatorOption {
	return append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(userDataDir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
}

// Start starts headless Chromium for the test and returns a tab
// context bound to parent. Without a Chromium binary the test is skipped,
// or fails when CI=true.
func Start(t testing.TB, parent context.Context) context.Context {
	t.Helper()
	path := findChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium binary (/usr/bin/chromium, chromium or chromium-browser on PATH); CI must run the browser tests")
		}
		t.Skip("no chromium binary (/usr/bin/chromium, chromium or chromium-browser on PATH)")
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, chromiumOptions(path, t.TempDir())...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// Tab drives one browser tab for a test. Each action has its own time
// limit, so a selector that matches nothing fails with its own message
// instead of using up the whole test's time; failures end the test.
type Tab struct {
	t    testing.TB
	ctx  context.Context
	Step time.Duration // limit of one action; 15 s
}

// NewTab wraps the tab context Start returned.
func NewTab(t testing.TB, ctx context.Context) *Tab {
	return &Tab{t: t, ctx: ctx, Step: 15 * time.Second}
}

// Open starts headless Chromium for the test (as Start does) and returns a
// tab whose steps all end within timeout from now.
func Open(t testing.TB, timeout time.Duration) *Tab {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return NewTab(t, Start(t, ctx))
}

// Submit clicks the submit button of the page's main form.
func Submit() chromedp.Action[chromedp.Void] {
	// Not a form's hidden default button (tabindex -1, there so Enter
	// submits) nor its Find button (a search inside the form).
	return chromedp.Click(chromedp.CSS(`main form button[type="submit"]:not([tabindex="-1"]):not([value="find"])`))
}

func (b *Tab) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.Step)
}

// Do runs actions that do not navigate.
func (b *Tab) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Text reads the visible text of the element sel selects, trimmed.
func (b *Tab) Text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(b.read("text of "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// Value reads the value of the input sel selects.
func (b *Tab) Value(sel string) string {
	b.t.Helper()
	return b.read("value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// Eval runs a JavaScript expression that yields a string.
func (b *Tab) Eval(what, js string) string {
	b.t.Helper()
	return b.read(what, chromedp.Evaluate[string](js))
}

// read runs one step that yields a string, failing the test with what.
func (b *Tab) read(what string, a chromedp.Action[string]) string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	s, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return s
}

// Present reports whether sel selects an element now, without waiting.
func (b *Tab) Present(sel string) bool {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return b.Eval("look for "+sel, "document.querySelector("+string(q)+") !== null ? 'yes' : ''") == "yes"
}

// Navigate runs the steps (a click on a link or a submit button, or a
// navigation), waits for the page that results, checks that it came with
// status want, and returns its path.
func (b *Tab) Navigate(what string, want int, steps ...chromedp.Action[chromedp.Void]) string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	if resp == nil {
		b.t.Fatalf("%s: no response", what)
	}
	u, err := url.Parse(resp.URL)
	if err != nil {
		b.t.Fatalf("%s: page URL %q: %v", what, resp.URL, err)
	}
	if resp.Status != int64(want) {
		b.t.Fatalf("%s: %s status = %d, want %d", what, u.Path, resp.Status, want)
	}
	return u.Path
}

// PathID returns the id at the end of path, which must be prefix
// followed by digits (like /contacts/7), failing t otherwise.
func PathID(t testing.TB, path, prefix string) string {
	t.Helper()
	id, ok := strings.CutPrefix(path, prefix)
	if !ok || id == "" || strings.Trim(id, "0123456789") != "" {
		t.Fatalf("path = %q, want %s{id}", path, prefix)
	}
	return id
}
