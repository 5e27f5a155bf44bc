package e2e

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/smtptest"
)

// BenchmarkMail measures invitations per second through the whole path —
// an appointment written to calendar's API, its outbox row handed over the
// channel, posted to notifications with its Idempotency-Key, stored, and
// delivered to the SMTP server — beside a baseline that sends the same
// mails (the bytes the service produced) straight to the same SMTP server
// with as many senders as notifications has delivery workers, each on one
// connection it keeps (RSET between mails), as each delivery worker does.
// One op is mailsPerOp mails; both report mails/s, service also its ratio
// to the baseline. baseline-fresh sends the same way on a new connection
// per mail (what the delivery workers did before they kept theirs), for
// comparison only: service reports ratio-fresh against it. Each also
// reports the CPU time of the whole test process (the services, the SMTP
// server and the load) per mail, which other load on the machine disturbs
// less than the rate; service's cpu-ratio is the baseline's CPU per mail
// over its own: the rate ratio on a machine with no other work — and the
// write transactions and commits calendar's and notifications' databases
// made per mail (several writes share a commit in a group commit). Run:
//
//	go test -run '^$' -bench Mail -benchtime 3x ./e2e/
func BenchmarkMail(b *testing.B) {
	const mailsPerOp, workers = 300, 4
	smtp := smtptest.Start(b)
	con := startContacts(b, "", contacts.Config{Common: benchCommon()})
	notif := startNotifications(b, "", notifications.Config{SMTPURL: smtp.URL, Workers: workers, Common: benchCommon()})
	cal := startCalendar(b, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL, NotifyWorkers: workers, Common: benchCommon()})
	capi, kapi := newAPI(b, con.URL), newAPI(b, cal.URL)
	var ada contact
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org"}, &ada)
	waitSync(b, kapi, 20*time.Second, func(s syncStatus) bool { return s.CheckpointSeq >= 1 })

	// One invitation through the service: its bytes are the baseline's mail.
	if bad := createAppointments(cal.URL, 1, 1, "Warm-up", []int64{ada.ID}); len(bad) > 0 {
		b.Fatal(bad)
	}
	sample := smtp.WaitFor(b, 1, 20*time.Second)[0]
	msg := notifications.Message{From: sample.From, To: sample.To[0], Data: sample.Data}
	sender, err := notifications.ParseSMTPURL(smtp.URL)
	if err != nil {
		b.Fatal(err)
	}

	// direct sends mailsPerOp copies of msg with workers senders, each on
	// a Session from open, and waits until the server has them all.
	direct := func(b *testing.B, open func() notifications.Session) (rate, cpu float64) {
		var elapsed, used time.Duration
		for b.Loop() {
			want := len(smtp.Mails()) + mailsPerOp
			start, cpu0 := time.Now(), cpuTime(b)
			jobs := make(chan int)
			var wg sync.WaitGroup
			var errs []error
			var mu sync.Mutex
			for range workers {
				wg.Go(func() {
					conn := open()
					defer conn.Close()
					for range jobs {
						if err := conn.Send(context.Background(), msg); err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					}
				})
			}
			for i := range mailsPerOp {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			smtp.WaitFor(b, want, time.Minute)
			elapsed, used = elapsed+time.Since(start), used+cpuTime(b)-cpu0
			if len(errs) > 0 {
				b.Fatalf("%d sends failed, first: %v", len(errs), errs[0])
			}
		}
		rate = float64(b.N*mailsPerOp) / elapsed.Seconds()
		cpu = float64(used.Microseconds()) / float64(b.N*mailsPerOp)
		b.ReportMetric(rate, "mails/s")
		b.ReportMetric(cpu, "cpu-µs/mail")
		return rate, cpu
	}
	var baseline, baselineCPU, fresh float64
	b.Run("baseline", func(b *testing.B) { baseline, baselineCPU = direct(b, sender.Session) })
	b.Run("baseline-fresh", func(b *testing.B) {
		fresh, _ = direct(b, func() notifications.Session { return oneShot{sender} })
	})

	b.Run("service", func(b *testing.B) {
		var elapsed, used time.Duration
		// dbCount sums a database counter of calendar and notifications.
		dbCount := func(name string) float64 {
			sum := 0.0
			for _, base := range []string{cal.URL, notif.URL} {
				v, ok := procMetric(b, base, nil, name)
				if !ok {
					b.Fatalf("%s/metrics: no %s", base, name)
				}
				sum += v
			}
			return sum
		}
		writes0, commits0 := dbCount("syndic_db_writes_total"), dbCount("syndic_db_commits_total")
		for b.Loop() {
			want := len(smtp.Mails()) + mailsPerOp
			start, cpu0 := time.Now(), cpuTime(b)
			if bad := createAppointments(cal.URL, mailsPerOp, 8, "Bench", []int64{ada.ID}); len(bad) > 0 {
				b.Fatalf("%d appointments refused, first: %s", len(bad), bad[0])
			}
			smtp.WaitFor(b, want, 2*time.Minute)
			elapsed, used = elapsed+time.Since(start), used+cpuTime(b)-cpu0
		}
		got := float64(b.N*mailsPerOp) / elapsed.Seconds()
		cpu := float64(used.Microseconds()) / float64(b.N*mailsPerOp)
		mails := float64(b.N * mailsPerOp)
		b.ReportMetric((dbCount("syndic_db_writes_total")-writes0)/mails, "writes/mail")
		b.ReportMetric((dbCount("syndic_db_commits_total")-commits0)/mails, "commits/mail")
		b.ReportMetric(got, "mails/s")
		b.ReportMetric(cpu, "cpu-µs/mail")
		if baselineCPU > 0 {
			b.ReportMetric(baselineCPU/cpu, "cpu-ratio")
		}
		if baseline > 0 {
			b.ReportMetric(got/baseline, "ratio")
		}
		if fresh > 0 {
			b.ReportMetric(got/fresh, "ratio-fresh")
		}
		if mails := smtp.Mails(); len(mails) != 1+b.N*mailsPerOp+countBaseline(mails, msg.Data) {
			b.Fatalf("%d mails at the SMTP server: some were doubled or lost", len(mails))
		}
	})
}

// countBaseline counts the mails the baseline sent (copies of data).
func countBaseline(mails []smtptest.Mail, data []byte) int {
	n := 0
	for _, m := range mails {
		if string(m.Data) == string(data) {
			n++
		}
	}
	return n - 1 // the warm-up invitation itself
}

// oneShot is a Session that opens a connection for each mail.
type oneShot struct{ s *notifications.SMTPSender }

func (o oneShot) Send(ctx context.Context, m notifications.Message) error { return o.s.Send(ctx, m) }
func (o oneShot) Close() error                                            { return nil }

// cpuTime is the CPU time (user and system) the test process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
