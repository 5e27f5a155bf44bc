// Package browsertest starts headless Chromium (Debian's chromium) for the
// services' browser tests, driven with chromedp.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"

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
