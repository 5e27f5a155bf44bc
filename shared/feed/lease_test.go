package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// openApplied opens (another handle on) a follower database at url, with
// the counting table the sink writes.
func openApplied(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db := servicetest.OpenDB(t, url)
	schema := fstest.MapFS{"migrations/test_001_applied.sql": {Data: []byte(`CREATE TABLE applied (seq {{int}} PRIMARY KEY, n {{int}} NOT NULL)`)}}
	if err := db.Migrate(context.Background(), schema, Migrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

// storedWithToken reads the stored checkpoint of feed "contacts" and the
// fencing token it was written under.
func storedWithToken(db *sqldb.DB) (seq, token int64) {
	db.QueryRow(context.Background(), `SELECT seq, lease_token FROM feed_checkpoints WHERE name = 'contacts'`).Scan(&seq, &token)
	return seq, token
}

// TestLeaseFence: one holder at a time; a holder whose lease was taken
// over can neither renew it nor commit under it.
func TestLeaseFence(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := openApplied(t, url)
		a := &lease{db: db, name: "f", holder: "a", ttl: time.Hour}
		b := &lease{db: db, name: "f", holder: "b", ttl: time.Hour}
		if ok, err := a.acquire(ctx); !ok || err != nil {
			t.Fatalf("a.acquire = %v, %v", ok, err)
		}
		if ok, err := b.acquire(ctx); ok || err != nil {
			t.Fatalf("b.acquire while a holds it = %v, %v", ok, err)
		}
		a.ttl = time.Millisecond // a stops renewing: its lease runs out
		if err := a.renew(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for ok := false; !ok; {
			var err error
			if ok, err = b.acquire(ctx); err != nil || time.Now().After(deadline) {
				t.Fatalf("b.acquire after a's lease ran out = %v, %v", ok, err)
			}
		}
		if b.token <= a.token {
			t.Fatalf("tokens a %d, b %d: a takeover must bump the token", a.token, b.token)
		}
		err := db.Write(ctx, func(tx *sqldb.Tx) error {
			if err := a.fence(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO applied (seq, n) VALUES (1, 1)`)
			return err
		})
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("a commit under a lost lease = %v, want ErrLeaseLost", err)
		}
		var n int
		db.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&n)
		if n != 0 {
			t.Fatalf("%d rows written under a lost lease", n)
		}
		if err := a.renew(ctx); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("a.renew after the takeover = %v, want ErrLeaseLost", err)
		}
		if err := b.release(ctx); err != nil {
			t.Fatal(err)
		}
		a.ttl = time.Hour
		if ok, err := a.acquire(ctx); !ok || err != nil {
			t.Fatalf("a.acquire after b released = %v, %v", ok, err)
		}
	})
}

// TestFollowersTakeTurns: several followers of one feed on one database.
// Exactly one applies at a time; on shutdown it hands over at once, and
// when it dies (its database handle gone, no release) another takes over
// once the lease runs out. Every event is applied exactly once and the
// stored checkpoint, sampled all along, never moves backwards.
func TestFollowersTakeTurns(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		log := newMemLog(0)
		_, srv := newTestPublisher(t, log, "", 5)
		check := &sink{db: openApplied(t, url)}

		type running struct {
			f    *Follower
			db   *sqldb.DB
			stop context.CancelFunc
			done chan struct{}
		}
		var all []*running
		start := func(name string) *running {
			db := openApplied(t, url)
			s := &sink{db: db}
			f, err := NewFollower(context.Background(), FollowerConfig{Name: "contacts", URL: srv.URL + "/feed", DB: db, Apply: s.apply,
				Instance: name, LeaseTTL: 600 * time.Millisecond, Wait: 2 * time.Second, MinBackoff: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			r := &running{f: f, db: db, stop: cancel, done: make(chan struct{})}
			go func() { defer close(r.done); f.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-r.done })
			all = append(all, r)
			return r
		}
		active := func(rs ...*running) *running {
			t.Helper()
			var found *running
			waitFor(t, func() bool {
				found = nil
				for _, r := range rs {
					if r.f.Status().Follower == "active" {
						found = r
					}
				}
				return found != nil
			})
			return found
		}
		stored := func() int64 {
			seq, _ := storedWithToken(check.db)
			return seq
		}
		publish := func(n int, want int64) {
			t.Helper()
			log.add(n)
			log.commits.Notify()
			deadline := time.Now().Add(20 * time.Second)
			for stored() < want {
				if time.Now().After(deadline) {
					var states []Status
					for _, r := range all {
						states = append(states, r.f.Status())
					}
					t.Fatalf("checkpoint %d after 20 s, want %d; followers %+v", stored(), want, states)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}

		// The sampler: the checkpoint never goes back.
		var backwards []string
		var mu sync.Mutex
		sample, stopSampling := context.WithCancel(context.Background())
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var last, lastToken int64
			for sample.Err() == nil {
				seq, token := storedWithToken(check.db)
				if seq < last || token < lastToken {
					mu.Lock()
					backwards = append(backwards, fmt.Sprintf("seq %d token %d after seq %d token %d", seq, token, last, lastToken))
					mu.Unlock()
				} else {
					last, lastToken = seq, token
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()

		one, two := start("one"), start("two")
		first := active(one, two)
		publish(20, 20)

		// Shutdown: the active one releases, the other takes over at once.
		first.stop()
		<-first.done
		other := two
		if first == two {
			other = one
		}
		if got := active(other); got != other {
			t.Fatal("the standby did not take over")
		}
		publish(20, 40)

		// A crash: the active one's database handle goes away with no
		// release; a new standby takes over when the lease runs out.
		three := start("three")
		other.db.Close()
		other.stop()
		<-other.done
		if got := active(three); got != three {
			t.Fatal("no standby took over after the active follower died")
		}
		publish(20, 60)

		stopSampling()
		<-sampled
		check.check(t, 60)
		if len(backwards) > 0 {
			t.Fatalf("the checkpoint moved backwards, or was written under an older lease: %v", backwards)
		}
		if _, token := storedWithToken(check.db); token < 3 {
			t.Fatalf("checkpoint written under token %d after two handovers, want 3 or more", token)
		}
		if st := three.f.Status(); st.LeaseHolder != "three" || st.Instance != "three" {
			t.Fatalf("status %+v, want instance and holder three", st)
		}
	})
}
