package feed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"syndic/shared/config"
	"syndic/shared/metrics"
	"syndic/shared/retry"
	"syndic/shared/sqldb"
)

// ApplyFunc applies one event inside the caller's transaction. An error
// rolls the transaction back and stops the follower at that event, which
// is retried with backoff: events are never skipped.
type ApplyFunc func(ctx context.Context, tx *sqldb.Tx, e Event) error

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Name      string              // checkpoint key, e.g. "contacts"
	URL       string              // the subscription document, e.g. http://localhost:8081/feed
	Authorize func(*http.Request) // adds credentials to each request; may be nil
	Client    *http.Client        // nil: a client with no overall timeout (requests carry deadlines)
	DB        *sqldb.DB
	Apply     ApplyFunc
	// OnApplied, if set, is called after each commit with the new checkpoint.
	OnApplied func(Checkpoint)
	// Start says where a follower with no checkpoint starts: StartSnapshot
	// (the default) bootstraps from the publisher's snapshot when the feed
	// links one, StartBeginning replays every archive (FEED_START). Either
	// way, a page dropped by the publisher's retention (410 Gone) makes it
	// bootstrap from the snapshot again (see bootstrap.go).
	Start string

	// Instance names this instance in the follower lease (FOLLOWER_ID);
	// empty: host name, process id and a random suffix.
	Instance string
	// LeaseTTL is how long the lease lasts unless renewed (it is renewed
	// three times as often): how long a standby waits after the active
	// instance died before taking over. 5 s.
	LeaseTTL time.Duration

	PollInterval time.Duration // between polls when the publisher does not long-poll; 5 s
	Wait         time.Duration // Prefer: wait=…; 25 s; negative disables long-poll
	Timeout      time.Duration // per request, on top of the wait; 10 s
	MinBackoff   time.Duration // first wait after an error; 100 ms
	MaxBackoff   time.Duration // longest wait after errors; 30 s
	MaxBody      int64         // largest document accepted; 16 MiB

	Log     *slog.Logger
	Metrics *metrics.Set
}

// Status is what a follower reports about itself.
type Status struct {
	CheckpointSeq int64     `json:"checkpoint_seq"`
	HeadSeq       int64     `json:"head_seq"` // the highest seq seen in the feed
	Lag           int64     `json:"lag"`
	Page          string    `json:"page"`
	LastPoll      time.Time `json:"last_poll,omitzero"` // last successful fetch
	LastApplied   time.Time `json:"last_applied,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	FailingSeq    int64     `json:"failing_seq,omitempty"` // an event that could not be applied
	Errors        int64     `json:"errors"`
	LongPoll      bool      `json:"long_poll"` // the publisher honours Prefer: wait

	// Follower is "active" while this instance holds the follower lease
	// and applies the feed, "standby" while another one does.
	Follower       string    `json:"follower"`
	Instance       string    `json:"instance"`         // this instance, in the lease
	LeaseHolder    string    `json:"lease_holder"`     // who holds the lease
	LeaseExpiresAt time.Time `json:"lease_expires_at"` // unless renewed
}

// Follower follows an Atom feed with RFC 5005 archives into a database,
// applying each event exactly once, in seq order, with its checkpoint in
// the same transaction.
type Follower struct {
	cfg FollowerConfig
	log *slog.Logger

	// Walking state, used only by Run's goroutine.
	cp          Checkpoint
	next        string    // the document to fetch next
	etag        string    // of the subscription document last fetched…
	etagURL     string    // …from this URL
	current     string    // the subscription document's URL, once seen
	ahead       *prefetch // the next archives, fetched while a page applies
	lastArchive string    // self of the newest archive page known applied through
	lease       *lease
	snap        snapState // bootstrap.go

	mu     sync.Mutex
	status Status

	mErrors, mApplied interface{ Inc(int64) }
	mApply            interface{ UpdateSince(time.Time) }
}

// Errors of the walk that need the publisher's attention.
var (
	ErrGap    = errors.New("feed: gap that the archives cannot close")
	ErrStatus = errors.New("feed: unexpected HTTP status")
)

// NewFollower prepares a follower and loads its checkpoint from the
// feed_checkpoints table, which Migrations creates.
func NewFollower(ctx context.Context, cfg FollowerConfig) (*Follower, error) {
	if cfg.Name == "" || cfg.URL == "" || cfg.DB == nil || cfg.Apply == nil {
		return nil, errors.New("feed: follower needs Name, URL, DB and Apply")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.Wait == 0 {
		cfg.Wait = 25 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Instance == "" {
		cfg.Instance = instanceID()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Start == "" {
		cfg.Start = StartSnapshot
	}
	if cfg.Start != StartSnapshot && cfg.Start != StartBeginning {
		return nil, fmt.Errorf("feed: follower start %q: want %s or %s", cfg.Start, StartSnapshot, StartBeginning)
	}
	f := &Follower{cfg: cfg, log: cfg.Log.With("feed", cfg.Name),
		lease: &lease{db: cfg.DB, name: cfg.Name, holder: cfg.Instance, ttl: cfg.LeaseTTL}}
	cp, err := f.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	f.cp = cp
	f.status.CheckpointSeq, f.status.HeadSeq, f.status.Page = cp.Seq, cp.Seq, cp.Page
	f.status.Follower, f.status.Instance = "standby", cfg.Instance
	m := cfg.Metrics
	f.mErrors = m.Counter("follower_errors", "Failed rounds of following the feed (fetch, parse or apply); each is retried after a backoff.")
	f.mApplied = m.Counter("follower_applied_events", "Feed events applied and checkpointed.")
	f.snap.metric = m.Counter("follower_bootstraps", "Times the follower started (again) from the publisher's snapshot.")
	f.mApply = m.Timer("follower_apply", "Time to apply a batch of feed events and save the checkpoint, in one transaction.")
	m.GaugeFunc("follower_checkpoint_seq", "Sequence number of the last feed event applied.", func() int64 { return f.Status().CheckpointSeq })
	m.GaugeFunc("follower_head_seq", "Sequence number of the newest feed event seen.", func() int64 { return f.Status().HeadSeq })
	m.GaugeFunc("follower_lag", "Feed events seen but not yet applied.", func() int64 { return f.Status().Lag })
	m.GaugeFunc("follower_failing_seq", "Sequence number of a feed event that cannot be applied, 0 when none.", func() int64 { return f.Status().FailingSeq })
	m.GaugeFunc("follower_active", "1 when this replica holds the follower lease and follows the feed, 0 when it stands by.", func() int64 {
		if f.Status().Follower == "active" {
			return 1
		}
		return 0
	})
	m.GaugeFunc("follower_last_poll_unixtime", "Unix time in seconds of the last answer from the feed, 0 before the first.", func() int64 {
		if t := f.Status().LastPoll; !t.IsZero() {
			return t.Unix()
		}
		return 0
	})
	return f, nil
}

// Status returns a snapshot of the follower's state.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.Lag = max(0, s.HeadSeq-s.CheckpointSeq)
	return s
}

func (f *Follower) update(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

// Run follows the feed until ctx is done — while this instance holds the
// follower lease; until then it stands by, ready to take over (see
// lease.go). Errors are reported in Status, logged and retried with
// exponential backoff and jitter.
func (f *Follower) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if f.standBy(ctx) {
			f.lead(ctx)
		}
	}
}

// restart resets the walk to start at checkpoint cp.
func (f *Follower) restart(cp Checkpoint) {
	f.drainAhead()
	f.cp = cp
	f.next, f.etag, f.etagURL, f.lastArchive = "", "", "", ""
	f.update(func(s *Status) {
		s.CheckpointSeq, s.Page = cp.Seq, cp.Page
		s.HeadSeq = max(s.HeadSeq, cp.Seq)
	})
}

// walk follows the feed until ctx is done or the lease is lost.
func (f *Follower) walk(ctx context.Context) {
	backoff := retry.Backoff{Min: f.cfg.MinBackoff, Max: f.cfg.MaxBackoff}
	failures := 0
	for ctx.Err() == nil {
		idle, err := f.step(ctx)
		if err != nil && ctx.Err() == nil {
			err = f.bootstrapIfGone(ctx, err) // retention dropped a page we need
		}
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrLeaseLost):
			f.log.Warn("follower lease lost: standing by", "err", err)
			return
		case err != nil:
			f.mErrors.Inc(1)
			f.update(func(s *Status) {
				s.LastError, s.LastErrorAt = err.Error(), time.Now().UTC()
				s.Errors++
			})
			failures++
			wait := backoff.Wait(failures)
			f.log.Warn("follow feed", "err", err, "retry_in", wait.String())
			retry.Sleep(ctx, wait)
			f.next, f.etag = "", "" // start over from the checkpoint's page, unconditionally
		default:
			if failures > 0 || f.Status().LastError != "" {
				f.update(func(s *Status) { s.LastError, s.FailingSeq = "", 0 })
				f.log.Info("following feed again", "checkpoint", f.cp.Seq)
			}
			failures = 0
			if idle {
				retry.Sleep(ctx, f.cfg.PollInterval)
			}
		}
	}
}

// step fetches one document and applies what it holds beyond the
// checkpoint. idle reports that the caller should wait PollInterval before
// the next step (nothing new, and no long-poll to wait in).
func (f *Follower) step(ctx context.Context) (idle bool, err error) {
	url := f.next
	if url == "" { // (re)starting: from the checkpoint's page, or the feed
		url = cmp.Or(f.cp.Page, f.cfg.URL)
	}
	doc, err := f.fetchAhead(ctx, url)
	var se *StatusError
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone) && url != f.cfg.URL {
		f.log.Warn("page gone; reading the feed from the top", "page", config.Redact(url), "err", err)
		// Unconditionally: an ETag of the feed seen before would be answered
		// 304, and the events between the checkpoint and it never read.
		f.etag = ""
		doc, err = f.fetch(ctx, f.cfg.URL)
	}
	if err != nil {
		return false, err
	}
	if doc.notModified {
		f.next = doc.url
		return f.pollLater(doc), nil
	}
	page := doc.page
	if !page.Archive {
		f.current, f.etag, f.etagURL = doc.url, doc.etag, doc.url
	}
	if f.startFromSnapshot(page) {
		return false, f.bootstrap(ctx, page.Snapshot)
	}
	if f.cp.Seq == 0 && !page.Archive && page.First != "" {
		f.next = page.First // no checkpoint: start from the oldest archive
		return false, nil
	}
	if page.Archive && page.NextArchive != "" && !f.prefetching() {
		f.startAhead(ctx, page.NextArchive) // fetched and parsed while this page applies
	}
	before := f.cp.Seq
	if err := f.catchUp(ctx, page); err != nil {
		return false, err
	}
	if page.Archive && page.NextArchive != "" {
		f.next = page.NextArchive
		return false, nil
	}
	if page.Archive { // an archive with no next: the feed has the rest
		f.next = f.cfg.URL
		return false, nil
	}
	f.next = doc.url
	return f.cp.Seq == before && f.pollLater(doc), nil
}

// pollLater reports whether, with nothing new, the next request should
// wait POLL_INTERVAL: when long-poll is off, or the publisher ignored it.
// After a plain fetch the next request long-polls at once.
func (f *Follower) pollLater(doc fetched) bool {
	return f.cfg.Wait <= 0 || doc.askedWait && !doc.longPolled
}

// catchUp applies the events of page beyond the checkpoint. When page
// starts after checkpoint+1, or is empty behind an archive not yet seen, it
// walks prev-archive back until the gap closes, then applies forward.
func (f *Follower) catchUp(ctx context.Context, page *Page) error {
	f.seen(page)
	stack := []*Page{page}
	for p := page; !f.reaches(p); {
		if p.PrevArchive == "" {
			return fmt.Errorf("%w: checkpoint %d, oldest page %s starts at %d", ErrGap, f.cp.Seq, config.Redact(p.Self), lowest(p))
		}
		doc, err := f.fetch(ctx, p.PrevArchive)
		if err != nil {
			return fmt.Errorf("walking back for seq %d: %w", f.cp.Seq+1, err)
		}
		prev := doc.page
		f.seen(prev)
		if len(prev.Events) > 0 && prev.Events[len(prev.Events)-1].Seq <= f.cp.Seq {
			f.lastArchive = prev.Self
			break // entirely applied: the gap starts after it
		}
		stack = append(stack, prev)
		p = prev
	}
	for i := len(stack) - 1; i >= 0; i-- {
		if err := f.applyPage(ctx, stack[i]); err != nil {
			return err
		}
	}
	return nil
}

// reaches reports whether p joins the checkpoint: it holds checkpoint+1 or
// nothing newer, and (when empty) the archive before it has been seen.
func (f *Follower) reaches(p *Page) bool {
	if len(p.Events) == 0 {
		return p.PrevArchive == "" || p.PrevArchive == f.lastArchive
	}
	return p.Events[0].Seq <= f.cp.Seq+1
}

func lowest(p *Page) int64 {
	if len(p.Events) == 0 {
		return 0
	}
	return p.Events[0].Seq
}

// seen notes the head a page shows.
func (f *Follower) seen(p *Page) {
	if p.Snapshot != "" {
		f.snap.url = p.Snapshot
	}
	if n := len(p.Events); n > 0 {
		head := p.Events[n-1].Seq
		f.update(func(s *Status) { s.HeadSeq = max(s.HeadSeq, head) })
	}
}

// applyPage applies the events of p after the checkpoint in one
// transaction with the new checkpoint. When an event fails, the ones
// before it are committed and the error names the failing seq.
func (f *Follower) applyPage(ctx context.Context, p *Page) error {
	var events []Event
	for _, e := range p.Events {
		if e.Seq > f.cp.Seq {
			events = append(events, e)
		}
	}
	for i, e := range events {
		if e.Seq != f.cp.Seq+1+int64(i) {
			return fmt.Errorf("%w: page %s jumps from %d to %d", ErrGap, config.Redact(p.Self), f.cp.Seq+int64(i), e.Seq)
		}
	}
	if len(events) == 0 {
		f.appliedThrough(p)
		return nil
	}
	self := p.Self
	if self == "" {
		self = f.cfg.URL
	}
	n, err := f.commit(ctx, events, self)
	if err != nil && n > 0 {
		if _, err2 := f.commit(ctx, events[:n], self); err2 != nil {
			return err2
		}
	}
	if err == nil {
		f.appliedThrough(p)
	}
	return err
}

// appliedThrough records that every event of archive p is applied: an
// empty subscription document linking back to it has no gap behind it.
func (f *Follower) appliedThrough(p *Page) {
	if p.Archive {
		f.lastArchive = p.Self
	}
}
