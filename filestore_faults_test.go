package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// envMidWriteCrash names the heroes file the child of
// TestCrashLeftoversAreRemoved writes to; when set, the test binary runs
// TestHelperMidWriteCrash as that child.
const envMidWriteCrash = "HEROES_TEST_MID_WRITE_CRASH"

// TestCrashLeftoversAreRemoved kills a writer in the middle of a write
// (its temporary file written, not yet renamed), several times, each time
// opening the file store again: the temporary file a kill left is removed
// at the next open, which logs how many it removed; the acknowledged
// heroes are all there, and files that are not the store's temporary files
// are left alone.
func TestCrashLeftoversAreRemoved(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL is not available on windows")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "heroes.json")
	var acked []string
	for i := range 3 {
		// Each child opens the store first, which removes what the
		// previous one left: the leftovers never pile up.
		acked = append(acked, killMidWrite(t, path)...)
		switch n := countTemps(t, dir); {
		case n == 0:
			t.Fatalf("after kill %d the folder holds no temporary file: the child was not killed mid-write", i+1)
		case n > 1:
			t.Errorf("after kill %d the folder holds %d temporary files; want only the last kill's", i+1, n)
		}
	}
	others := []string{".heroes.json.tmp-x1", "other.json.tmp-123", ".heroes.json.tmp-"}
	for _, name := range others {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	s, err := openStore(context.Background(), storeOptions{Kind: "file", File: path}, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("openStore() after the kills = %v", err)
	}
	defer s.Close()
	if n := countTemps(t, dir); n != 0 {
		t.Errorf("after reopening the folder holds %d of the store's temporary files; want none", n)
	}
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s, not a temporary file of the store, was removed: %v", name, err)
		}
	}
	if !strings.Contains(logs.String(), `"stale_temporary_files":1`) {
		t.Errorf("the log does not say the temporary file was removed: %s", logs.String())
	}
	for _, id := range acked {
		if _, _, err := s.Get(context.Background(), id); err != nil {
			t.Errorf("acknowledged hero %s: %v", id, err)
		}
	}
}

// killMidWrite runs the child writer on path until it reports it is in the
// middle of a write, kills it with SIGKILL, and returns the ids it
// acknowledged.
func killMidWrite(t *testing.T, path string) []string {
	t.Helper()
	cmd, sc := startChildTest(t, "TestHelperMidWriteCrash", envMidWriteCrash, path)
	defer cmd.Wait() // killed: its error is the expected signal
	var acked []string
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "acked "); ok {
			acked = append(acked, id)
		}
		if line == "mid-write" {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return acked
}

// countTemps counts the store's temporary files (".heroes.json.tmp-<digits>")
// in dir.
func countTemps(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), ".heroes.json.tmp-"); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			n++
		}
	}
	return n
}

// TestHelperMidWriteCrash is the child of TestCrashLeftoversAreRemoved; it
// does nothing in a normal test run. It creates two heroes, printing
// "acked <id>" for each, then starts a third and, with its temporary file
// written and before the rename, prints "mid-write" and waits to be killed.
func TestHelperMidWriteCrash(t *testing.T) {
	path := os.Getenv(envMidWriteCrash)
	if path == "" {
		t.Skip("runs only as the child of TestCrashLeftoversAreRemoved")
	}
	s := openChildStore(path)
	var hang atomic.Bool
	s.fsync = func(f *os.File) error {
		if hang.Load() && strings.Contains(f.Name(), ".tmp-") {
			fmt.Println("mid-write")
			time.Sleep(time.Minute)
		}
		return f.Sync()
	}
	for i := range 3 {
		hang.Store(i == 2)
		childCreate(s, "Crash")
	}
	os.Exit(0)
}

// failingDisk is an fsync for a file store that fails with err while on is
// set, as a full disk (ENOSPC) or a read-only one (EROFS) makes a write
// fail, and counts the calls.
type failingDisk struct {
	on    atomic.Bool
	err   error
	calls atomic.Int64
}

func (d *failingDisk) fsync(f *os.File) error {
	d.calls.Add(1)
	if d.on.Load() {
		return d.err
	}
	return f.Sync()
}

// newServerWithKeys builds the service on store and a test provider, as
// run does, and loads the signing keys with one authorized request, so that
// only the store decides what /readyz answers.
func newServerWithKeys(t *testing.T, store heroStore) http.Handler {
	t.Helper()
	p := newTestIDP(t)
	cfg := p.config(t, nil)
	cfg.ReadyzCache = 0 // the tests change the store between two calls of /readyz
	logger := discardLogger()
	client := &http.Client{Timeout: 5 * time.Second}
	prov, v, af := newTestHalves(t, cfg, cfg.verifyOptions(client, logger), client, logger)
	h := newServer(logger, cfg, prov, v, af, store, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, bearer(httptest.NewRequest(http.MethodGet, "/api/heroes/", nil), p.token(t, nil)))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /api/heroes/ = %d %s; want 200", w.Code, w.Body)
	}
	return h
}

// TestReadyzAfterFailedWrite checks /readyz through newServer reports the
// file store not ready while its writes fail for lack of space or a
// read-only disk, and ready again once a write succeeds.
func TestReadyzAfterFailedWrite(t *testing.T) {
	for _, diskErr := range []error{syscall.ENOSPC, syscall.EROFS, os.ErrPermission} {
		t.Run(diskErr.Error(), func(t *testing.T) {
			store, err := openFileStore(filepath.Join(t.TempDir(), "heroes.json"), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			disk := &failingDisk{err: diskErr}
			store.fsync = disk.fsync
			h := newServerWithKeys(t, store)
			readyz := func() int {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
				return w.Code
			}
			if got := readyz(); got != http.StatusOK {
				t.Fatalf("/readyz before any failure = %d; want 200", got)
			}
			disk.on.Store(true)
			if _, err := store.Create(t.Context(), testHero(newHeroID(), "Lost")); !errors.Is(err, errStoreUnavailable) {
				t.Fatalf("Create() on a failing disk = %v; want errStoreUnavailable", err)
			}
			if got := readyz(); got != http.StatusServiceUnavailable {
				t.Errorf("/readyz after a failed write = %d; want 503", got)
			}
			disk.on.Store(false)
			if _, err := store.Create(t.Context(), testHero(newHeroID(), "Kept")); err != nil {
				t.Fatal(err)
			}
			if got := readyz(); got != http.StatusOK {
				t.Errorf("/readyz after a write succeeded again = %d; want 200", got)
			}
		})
	}
}

// TestReadyProbesWriteRarely checks Ready after a failed write: probes
// write nothing more often than once per readyProbeEvery, whatever their
// rate, and the first probe after the disk has room again brings the store
// back, with its heroes unchanged.
func TestReadyProbesWriteRarely(t *testing.T) {
	ctx := t.Context()
	store, err := openFileStore(filepath.Join(t.TempDir(), "heroes.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	clock := newFakeClock(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	store.now = clock.now
	disk := &failingDisk{err: syscall.ENOSPC}
	store.fsync = disk.fsync
	kept := testHero(newHeroID(), "Kept")
	if _, err := store.Create(ctx, kept); err != nil {
		t.Fatal(err)
	}
	disk.on.Store(true)
	store.Create(ctx, testHero(newHeroID(), "Lost")) // fails: no space
	before := disk.calls.Load()
	for range 50 {
		if err := store.Ready(ctx); !errors.Is(err, errStoreUnavailable) {
			t.Fatalf("Ready() on a full disk = %v; want errStoreUnavailable", err)
		}
		clock.advance(100 * time.Millisecond)
	}
	if probes := disk.calls.Load() - before; probes > 1 {
		t.Errorf("50 probes in 5 s tried %d writes; want at most 1 per %v", probes, readyProbeEvery)
	}
	disk.on.Store(false)
	if err := store.Ready(ctx); err == nil {
		t.Errorf("Ready() wrote again before %v passed", readyProbeEvery)
	}
	clock.advance(readyProbeEvery)
	if err := store.Ready(ctx); err != nil {
		t.Errorf("Ready() once the disk has room = %v; want nil", err)
	}
	reopened := readBack(t, store)
	if !slices.Equal(reopened, []string{kept.ID}) {
		t.Errorf("the file holds %v after the probe; want only %s", reopened, kept.ID)
	}
}

// readBack reads the ids the file of s holds, as a restart would.
func readBack(t *testing.T, s *localStore) []string {
	t.Helper()
	set, _, err := readHeroesFile(s.path, maxHeroesFile)
	if err != nil {
		t.Fatal(err)
	}
	return set.ids
}
