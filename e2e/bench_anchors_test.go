package e2e

// The anchors: syndic's headline figures beside the systems a user would
// pick instead, measured in the same `make bench` run on the same machine.
// The brokers are the ones on every development machine and in CI:
// RabbitMQ at ANCHOR_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/)
// and NATS JetStream at ANCHOR_NATS_URL (default nats://127.0.0.1:4222);
// Watermill SQL runs on the PostgreSQL of TEST_DATABASE_URL, in a database
// of its own created for the run and dropped after it. An anchor that is
// not reachable is skipped with a message saying what was not reachable
// (also under CI=true: make bench does not run in CI); benchtable shows it
// as skipped. Like the other benchmarks they report and never assert
// timing; only wrong answers fail them (a message lost, doubled or not
// confirmed).
//
// Every message is a contact as contacts' API answers it (JSON, ~190
// bytes) carrying a sequence number as its id; the consumer decodes it to
// learn the id, as calendar decodes each event, stamps the time of receipt
// and acknowledges it. Brokers:
//   - rabbitmq: a classic durable queue of its own, persistent messages
//     (delivery mode 2), publisher confirms (each writer its own channel in
//     confirm mode, waiting for the confirm of each message before the
//     next), one consumer on a connection of its own with manual acks and a
//     prefetch of anchorPrefetch. RabbitMQ confirms a persistent message
//     once it is on disk or once it has been consumed and acked on every
//     queue, whichever comes first: with the consumer keeping up, a message
//     may be confirmed without having been written.
//   - jetstream: a stream of its own with file storage, js.Publish waiting
//     for each PubAck, one durable pull consumer (Consume) with explicit
//     acks on a connection of its own. nats-server syncs its files to disk
//     on a timer (sync_interval, 2 minutes by default), not per message: a
//     PubAck on a single server means the message was written to the OS,
//     not to the disk.
//
// syndic's own figures beside them are as durable as sqldb makes its
// commits (SQLite's synchronous pragma; PostgreSQL's synchronous_commit,
// on by default).
//
// BenchmarkAnchorPropagation/{rabbitmq,jetstream}: the shape of
// BenchmarkPropagation/longpoll: one publisher writes one message at a
// time, waits for its confirm, and writes the next once the consumer has
// it; the latency runs from the start of the publish to the consumer's
// receipt. One op is propagationWrites writes, after propagationWarmup;
// p50-µs and p99-µs, and confirm-p50-µs, from the publish to its confirm
// (the next write waits for both). (syndic's figure runs to calendar's
// commit of the contact in its own database, after the consumer's parse
// and apply: the broker's consumer does no such work.)
//
// BenchmarkAnchorEndToEnd/{rabbitmq,jetstream}: the shape of
// BenchmarkEndToEnd/service: endToEndWriters writers publish
// endToEndWrites messages at once, each waiting for its confirm before
// its next (as contacts' writers wait for their HTTP answer), into the one
// consumer. events/s runs from the first publish to the last receipt,
// writes/s to the last confirm; p50-µs and p99-µs from each publish to its
// receipt.
//
// BenchmarkPostgresWrites/{watermill,syndic}: endToEndWriters writers,
// endToEndWrites writes per op, on the same PostgreSQL. watermill
// publishes the contact JSON with watermill-sql's Publisher
// (DefaultPostgreSQLSchema: one INSERT, committed, per Publish) through
// database/sql and pgx; syndic creates contacts through contacts' JSON API
// over HTTP, contacts running in process on a fresh schema. Both report
// writes/s; syndic also p50-µs and p99-µs of its POSTs.
//
// BenchmarkPostgresPropagation/{watermill,syndic}: one write at a time,
// the next once the consumer has it, each after a random wait of up to
// anchorPollInterval so writes do not fall into step with Watermill's
// poll. watermill: a watermill-sql Subscriber polling every
// anchorPollInterval (10 ms), the latency from Publish to the message on
// the subscriber's channel. syndic: contacts and calendar both on
// PostgreSQL (a schema each), calendar long-polling as configured by
// default, the latency from the POST to calendar's commit (as in
// BenchmarkPropagation). One op is anchorPGWrites writes; p50-µs and
// p99-µs (watermill also confirm-p50-µs, Publish alone).
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	go test -v -run '^$' -bench 'Anchor|Postgres' -benchtime 3x ./e2e/

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"syndic/contacts"
	"syndic/shared/sqldb/sqldbtest"
)

const (
	anchorAMQPURL      = "amqp://guest:guest@127.0.0.1:5672/"
	anchorNATSURL      = "nats://127.0.0.1:4222"
	anchorPrefetch     = 256
	anchorPollInterval = 10 * time.Millisecond
	anchorPGWrites     = 100 // per op of BenchmarkPostgresPropagation
	anchorDialTimeout  = 3 * time.Second
	anchorTopic        = "syndic_bench"
)

// BenchmarkAnchorPropagation measures write → in the consumer with
// RabbitMQ durable and NATS JetStream, the shape of BenchmarkPropagation.
func BenchmarkAnchorPropagation(b *testing.B) {
	b.Run("rabbitmq", func(b *testing.B) { anchorPropagate(b, openRabbitMQ(b), propagationWrites, 0) })
	b.Run("jetstream", func(b *testing.B) { anchorPropagate(b, openJetStream(b), propagationWrites, 0) })
}

// BenchmarkAnchorEndToEnd measures 8 confirming writers into one consumer
// with RabbitMQ durable and NATS JetStream, the shape of BenchmarkEndToEnd.
func BenchmarkAnchorEndToEnd(b *testing.B) {
	b.Run("rabbitmq", func(b *testing.B) { anchorEndToEnd(b, openRabbitMQ(b)) })
	b.Run("jetstream", func(b *testing.B) { anchorEndToEnd(b, openJetStream(b)) })
}

// BenchmarkPostgresWrites measures 8 writers publishing with Watermill SQL
// and creating contacts with syndic, both on the same PostgreSQL.
func BenchmarkPostgresWrites(b *testing.B) {
	b.Run("watermill", func(b *testing.B) {
		bus := openWatermill(b, false)
		publish := bus.publisher(b)
		var next atomic.Int64
		// Warm the pool's connections and pgx's statement cache.
		if _, err := anchorWrite(publish, &next, 4*endToEndWriters, endToEndWriters); err != nil {
			b.Fatal(err)
		}
		var took time.Duration
		for b.Loop() {
			wrote, err := anchorWrite(publish, &next, endToEndWrites, endToEndWriters)
			if err != nil {
				b.Fatal(err)
			}
			took += wrote
		}
		if err := bus.stored(next.Load()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(benchRate(b.N*endToEndWrites, took), "writes/s")
	})
	b.Run("syndic", func(b *testing.B) {
		anchorPostgres(b)
		con := startContacts(b, "", contacts.Config{DatabaseURL: sqldbtest.PostgresURL(b), Common: benchCommon()})
		client := benchHTTPClient(b)
		var next atomic.Int64
		if _, err := endToEndCreate(client, con.URL, 4*endToEndWriters, endToEndWriters, &next); err != nil {
			b.Fatal(err)
		}
		took, _, lat := endToEndRounds(b, client, con.URL, &next, func(w endToEndWrite) time.Time { return w.done })
		b.ReportMetric(benchRate(b.N*endToEndWrites, took), "writes/s")
		benchLatencies(b, lat, 0)
	})
}

// BenchmarkPostgresPropagation measures write → in the consumer with
// Watermill SQL polling every 10 ms and with syndic, both on PostgreSQL.
func BenchmarkPostgresPropagation(b *testing.B) {
	b.Run("watermill", func(b *testing.B) {
		anchorPropagate(b, openWatermill(b, true), anchorPGWrites, anchorPollInterval)
	})
	b.Run("syndic", func(b *testing.B) {
		anchorPostgres(b)
		con := startContacts(b, "", contacts.Config{DatabaseURL: sqldbtest.PostgresURL(b), Common: benchCommon()})
		client := benchHTTPClient(b)
		n := 0
		create := func() (contacts.Contact, error) {
			n++
			return benchCreate(client, con.URL, "Postgres Person "+strconv.Itoa(n), "pg"+strconv.Itoa(n)+"@example.org", "+44 20 7946 0958")
		}
		benchPropagate(b, client, con.URL, sqldbtest.PostgresURL(b), create, anchorPGWrites, nil, anchorPollInterval, 0)
	})
}

// anchorPublish publishes one message and returns once the system
// confirmed it (a publisher confirm, a PubAck, a committed INSERT).
type anchorPublish func(ctx context.Context, body []byte) error

// anchorBus is one system set up for one sub-benchmark: a queue, stream
// or topic of its own and, when consuming, one consumer feeding sink.
type anchorBus struct {
	sink      *anchorSink
	publisher func(b *testing.B) anchorPublish // one writer's publisher
	stored    func(n int64) error              // checks n messages were stored (no consumer)
}

// anchorSink is the consumer's side: it decodes each message's id, stamps
// its receipt in arr and notes what was doubled or undecodable.
type anchorSink struct {
	arr  *benchArrivals
	mu   sync.Mutex
	seen map[int64]bool
	bad  error
}

func newAnchorSink() *anchorSink {
	return &anchorSink{arr: newBenchArrivals(), seen: map[int64]bool{}}
}

// receive handles one delivery: the time is taken first.
func (s *anchorSink) receive(body []byte) {
	now := time.Now()
	var c struct {
		ID int64 `json:"id"`
	}
	err := json.Unmarshal(body, &c)
	s.mu.Lock()
	switch {
	case err != nil:
		s.bad = cmp.Or(s.bad, fmt.Errorf("message %q: %w", body, err))
	case s.seen[c.ID]:
		s.bad = cmp.Or(s.bad, fmt.Errorf("message %d delivered twice", c.ID))
	}
	s.seen[c.ID] = true
	s.mu.Unlock()
	if err == nil {
		s.arr.stamp(now, c.ID)
	}
}

// fail notes a consumer error (an ack refused).
func (s *anchorSink) fail(err error) {
	s.mu.Lock()
	s.bad = cmp.Or(s.bad, err)
	s.mu.Unlock()
}

// check returns an error unless the messages 1…n arrived, each once.
func (s *anchorSink) check(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad != nil {
		return s.bad
	}
	if int64(len(s.seen)) != n {
		return fmt.Errorf("the consumer has %d distinct messages, %d were published", len(s.seen), n)
	}
	return nil
}

// stamp notes that id arrived at at, for wait.
func (a *benchArrivals) stamp(at time.Time, id int64) {
	a.mu.Lock()
	a.at[id] = at
	a.mu.Unlock()
	select {
	case a.signal <- struct{}{}:
	default:
	}
}

// anchorBody is message id: a contact as contacts' API answers it.
func anchorBody(id int64) []byte {
	k := strconv.FormatInt(id, 10)
	now := time.Now().UTC()
	body, _ := json.Marshal(contacts.Contact{ID: id, Name: "Load Person " + k, Email: "load" + k + "@example.org",
		Phone: "+44 20 7946 0958", Version: 1, CreatedAt: now, UpdatedAt: now})
	return body
}

// anchorPropagate publishes messages one at a time, each once the previous
// one is in the consumer, and reports the latencies. With spread > 0 each
// write waits a random part of spread first (see benchPropagate).
func anchorPropagate(b *testing.B, bus *anchorBus, writes int, spread time.Duration) {
	publish := bus.publisher(b)
	ctx := context.Background()
	var id int64
	send := func() (arrived, confirmed time.Duration) {
		id++
		t0 := time.Now()
		if err := publish(ctx, anchorBody(id)); err != nil {
			b.Fatalf("publish %d: %v", id, err)
		}
		confirmed = time.Since(t0)
		at, err := bus.sink.arr.wait(id, 30*time.Second)
		if err != nil {
			b.Fatalf("message %d: %v", id, err)
		}
		return at.Sub(t0), confirmed
	}
	for range propagationWarmup {
		send()
	}
	var lat, conf []time.Duration
	for b.Loop() {
		for range writes {
			if spread > 0 {
				time.Sleep(mathrand.N(spread)) // spreads writes over the poll cycle; not synchronisation
			}
			l, c := send()
			lat, conf = append(lat, l), append(conf, c)
		}
	}
	if err := bus.sink.check(id); err != nil {
		b.Fatal(err)
	}
	slices.Sort(conf)
	b.ReportMetric(float64(conf[len(conf)/2].Nanoseconds())/1e3, "confirm-p50-µs")
	benchLatencies(b, lat, 0)
}

// anchorEndToEnd runs rounds of endToEndWrites messages from
// endToEndWriters confirming writers into the consumer.
func anchorEndToEnd(b *testing.B, bus *anchorBus) {
	pubs := make([]anchorPublish, endToEndWriters)
	for w := range pubs {
		pubs[w] = bus.publisher(b)
	}
	ctx := context.Background()
	var next atomic.Int64
	// One message through first: the consumer in its steady state.
	if err := pubs[0](ctx, anchorBody(next.Add(1))); err != nil {
		b.Fatal(err)
	}
	if _, err := bus.sink.arr.wait(next.Load(), 30*time.Second); err != nil {
		b.Fatal(err)
	}
	type write struct {
		id          int64
		start, done time.Time
	}
	var (
		took, wrote time.Duration
		lat         []time.Duration
	)
	for b.Loop() {
		writes := make([]write, endToEndWrites)
		errs := make([]error, endToEndWriters)
		start := time.Now()
		var wg sync.WaitGroup
		for w := range endToEndWriters {
			wg.Go(func() {
				for i := w; i < endToEndWrites; i += endToEndWriters {
					id := next.Add(1)
					t0 := time.Now()
					if err := pubs[w](ctx, anchorBody(id)); err != nil {
						errs[w] = fmt.Errorf("publish %d: %w", id, err)
						return
					}
					writes[i] = write{id, t0, time.Now()}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		last, answered := start, start
		for _, w := range writes {
			at, err := bus.sink.arr.wait(w.id, time.Minute)
			if err != nil {
				b.Fatalf("message %d: %v", w.id, err)
			}
			lat = append(lat, at.Sub(w.start))
			last, answered = endToEndLater(last, at), endToEndLater(answered, w.done)
		}
		took += last.Sub(start)
		wrote += answered.Sub(start)
	}
	if err := bus.sink.check(next.Load()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(benchRate(b.N*endToEndWrites, took), "events/s")
	b.ReportMetric(benchRate(b.N*endToEndWrites, wrote), "writes/s")
	benchLatencies(b, lat, 0)
}

// anchorWrite publishes n messages from writers goroutines sharing publish
// and returns the time from the first publish to the last confirm.
func anchorWrite(publish anchorPublish, next *atomic.Int64, n, writers int) (time.Duration, error) {
	errs := make([]error, writers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				id := next.Add(1)
				if err := publish(context.Background(), anchorBody(id)); err != nil {
					errs[w] = fmt.Errorf("publish %d: %w", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// anchorName is a fresh name for a queue, stream or database of one run.
func anchorName(prefix string) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return prefix + hex.EncodeToString(r[:])
}

// anchorRedact shows a URL without its password, for messages.
func anchorRedact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// openRabbitMQ declares a fresh classic durable queue and starts its
// consumer; it skips b when RabbitMQ is not reachable.
func openRabbitMQ(b *testing.B) *anchorBus {
	addr := cmp.Or(os.Getenv("ANCHOR_AMQP_URL"), anchorAMQPURL)
	dial := func() *amqp.Connection {
		conn, err := amqp.DialConfig(addr, amqp.Config{Dial: amqp.DefaultDial(anchorDialTimeout)})
		if err != nil {
			b.Skipf("RabbitMQ not reachable at %s: %v", anchorRedact(addr), err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	cons, pubs := dial(), dial() // consumer and publishers apart, as RabbitMQ advises
	b.Logf("RabbitMQ %v", cons.Properties["version"])
	ch, err := cons.Channel()
	if err != nil {
		b.Fatal(err)
	}
	queue := anchorName("syndic-bench-")
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		b.Fatalf("declare queue: %v", err)
	}
	b.Cleanup(func() {
		if ch, err := pubs.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			ch.Close()
		}
	})
	if err := ch.Qos(anchorPrefetch, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "calendar", false, false, false, false, nil)
	if err != nil {
		b.Fatalf("consume: %v", err)
	}
	sink := newAnchorSink()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			sink.receive(d.Body)
			if err := d.Ack(false); err != nil {
				sink.fail(fmt.Errorf("ack: %w", err))
			}
		}
	}()
	b.Cleanup(func() {
		ch.Close() // ends deliveries
		<-done
	})
	return &anchorBus{sink: sink, publisher: func(b *testing.B) anchorPublish {
		ch, err := pubs.Channel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ch.Close() })
		if err := ch.Confirm(false); err != nil {
			b.Fatalf("confirm mode: %v", err)
		}
		return func(ctx context.Context, body []byte) error {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body})
			if err != nil {
				return err
			}
			ok, err := dc.WaitContext(ctx)
			if err == nil && !ok {
				err = errors.New("nacked by the broker")
			}
			return err
		}
	}}
}

// openJetStream creates a fresh file-storage stream and starts a durable
// consumer with explicit acks; it skips b when NATS or JetStream is not
// reachable.
func openJetStream(b *testing.B) *anchorBus {
	addr := cmp.Or(os.Getenv("ANCHOR_NATS_URL"), anchorNATSURL)
	dial := func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(addr, nats.Timeout(anchorDialTimeout), nats.NoReconnect())
		if err != nil {
			b.Skipf("NATS not reachable at %s: %v", anchorRedact(addr), err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		return nc, js
	}
	nc, js := dial()
	_, cjs := dial()
	b.Logf("nats-server %s", nc.ConnectedServerVersion())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, subject := anchorName("SYNDIC_BENCH_"), anchorName("syndic.bench.")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage}); err != nil {
		b.Skipf("JetStream not available at %s: create stream: %v", anchorRedact(addr), err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
	})
	consumer, err := cjs.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "calendar", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatalf("create consumer: %v", err)
	}
	sink := newAnchorSink()
	cc, err := consumer.Consume(func(m jetstream.Msg) {
		sink.receive(m.Data())
		if err := m.Ack(); err != nil {
			sink.fail(fmt.Errorf("ack: %w", err))
		}
	})
	if err != nil {
		b.Fatalf("consume: %v", err)
	}
	b.Cleanup(cc.Stop)
	return &anchorBus{sink: sink, publisher: func(*testing.B) anchorPublish {
		return func(ctx context.Context, body []byte) error {
			_, err := js.Publish(ctx, subject, body)
			return err
		}
	}}
}

// anchorPostgres returns TEST_DATABASE_URL, skipping b when it is unset or
// PostgreSQL does not answer there.
func anchorPostgres(b *testing.B) string {
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		b.Skip("TEST_DATABASE_URL not set: no PostgreSQL to compare on")
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		b.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), anchorDialTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		b.Skipf("PostgreSQL not reachable at %s: %v", anchorRedact(base), err)
	}
	return base
}

// openWatermill creates a fresh database on TEST_DATABASE_URL's server
// (dropped when b ends) with Watermill SQL's messages table and, with
// subscribe, starts a Subscriber polling every anchorPollInterval.
func openWatermill(b *testing.B, subscribe bool) *anchorBus {
	base := anchorPostgres(b)
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		b.Fatal(err)
	}
	admin := stdlib.OpenDB(*cfg)
	b.Cleanup(func() { admin.Close() })
	name := anchorName("bench_watermill_")
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		b.Fatalf("create database: %v", err)
	}
	b.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			b.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.Database = name
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(2 * endToEndWriters)
	db.SetMaxIdleConns(2 * endToEndWriters)
	b.Cleanup(func() { db.Close() })
	beginner := wmsql.BeginnerFromStdSQL(db)
	schema := wmsql.DefaultPostgreSQLSchema{}

	pub, err := wmsql.NewPublisher(beginner, wmsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pub.Close() })
	bus := &anchorBus{
		publisher: func(*testing.B) anchorPublish {
			return func(_ context.Context, body []byte) error {
				return pub.Publish(anchorTopic, message.NewMessage(watermill.NewUUID(), body))
			}
		},
		stored: func(n int64) error {
			var got int64
			if err := db.QueryRow("SELECT count(*) FROM " + schema.MessagesTable(anchorTopic)).Scan(&got); err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("watermill's table holds %d messages, %d were published", got, n)
			}
			return nil
		},
	}
	if !subscribe {
		return bus
	}
	sub, err := wmsql.NewSubscriber(beginner, wmsql.SubscriberConfig{
		ConsumerGroup:    "calendar",
		PollInterval:     anchorPollInterval,
		SchemaAdapter:    schema,
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	msgs, err := sub.Subscribe(context.Background(), anchorTopic)
	if err != nil {
		b.Fatalf("subscribe: %v", err)
	}
	bus.sink = newAnchorSink()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range msgs {
			bus.sink.receive(m.Payload)
			m.Ack()
		}
	}()
	b.Cleanup(func() {
		sub.Close()
		<-done
	})
	return bus
}
