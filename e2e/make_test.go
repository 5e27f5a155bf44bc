package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoCopy copies the files git tracks into a temporary folder, so a test
// can run make there without touching the checkout's bin/ and data/.
func repoCopy(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	src := strings.TrimSpace(string(root))
	files, err := exec.Command("git", "-C", src, "ls-files").Output()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			continue // listed but gone from the working tree
		}
		info, _ := os.Stat(filepath.Join(src, f))
		os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dst, f), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestMakeBuildAndRun: `make build` writes the three services and nothing
// else into bin/, and `make run` fails visibly — a non-zero exit naming
// the cause — when a service cannot start (its port taken), instead of
// leaving the others running or exiting 0.
func TestMakeBuildAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := repoCopy(t)
	build := exec.Command("make", "build")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "bin"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"calendar", "contacts", "notifications"}) {
		t.Fatalf("bin/ holds %v, want the three services only", names)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:8081") // contacts' port, taken
	if err != nil {
		t.Skipf("port 8081 is in use here already: %v", err)
	}
	defer ln.Close()
	var out bytes.Buffer
	run := exec.Command("make", "run")
	run.Dir, run.Stdout, run.Stderr = dir, &out, &out
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // make, goreman and the services: stopped together
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-run.Process.Pid, syscall.SIGINT) // goreman stops the services it started (each in a group of its own)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
			<-done
		}
		t.Fatalf("make run still running after 30 s with its port taken:\n%s", out.String())
	}
	syscall.Kill(-run.Process.Pid, syscall.SIGKILL) // anything left of the group
	if err == nil || !strings.Contains(out.String(), "address already in use") {
		t.Fatalf("make run with contacts' port taken: %v, want a failure naming the cause:\n%s", err, out.String())
	}
}
