# syndic: three services that talk through Atom feeds. See README.md.
GO ?= go
TEST_DATABASE_URL ?=
BENCHTIME ?= 2s
E2E_BENCHTIME ?= 3x
REPLICA_BENCHTIME ?= 1x

.PHONY: build run run-replicas test bench lint clean

build:
	$(GO) build -o bin/ ./contacts/cmd/contacts ./calendar/cmd/calendar ./notifications/cmd/notifications

# run starts the Procfile's three binaries with goreman, which loads .env. PORT,
# DATABASE_URL and BASE_URL each name one service's own setting: they are removed from
# the shell's environment so every binary keeps its default port and database.
run: build
	@echo 'contacts       http://localhost:8081'
	@echo 'calendar       http://localhost:8082  (follows http://localhost:8081/feed)'
	@echo 'notifications  http://localhost:8083  (no SMTP_URL: mails are printed below)'
	@echo 'Ctrl-C stops all three.'
	env -u PORT -u DATABASE_URL -u BASE_URL $(GO) tool goreman -rpc-server=false -set-ports=false -exit-on-error start

# run-replicas starts two replicas of each service on the local PostgreSQL behind HAProxy
# (deploy/run-replicas.sh says what it needs).
run-replicas: build
	deploy/run-replicas.sh

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# bench runs the contacts benchmarks for BENCHTIME each, the e2e ones for
# E2E_BENCHTIME ops each (about 2 minutes in all on 2 cores, and 50–100 s
# more for BenchmarkSnapshot: seeding 100,000 events, then 3 starts of each
# kind), the anchors
# (RabbitMQ on 127.0.0.1:5672, NATS JetStream on 127.0.0.1:4222, Watermill SQL and
# syndic on the PostgreSQL of TEST_DATABASE_URL; -v, so a skipped anchor's reason
# reaches the table; about 30 s) for E2E_BENCHTIME ops each, and the replica ones
# (PostgreSQL from TEST_DATABASE_URL, haproxy, nginx; about 45 s) for
# REPLICA_BENCHTIME ops each, keeps their output in .bench/raw.txt and prints the
# tables from it with e2e/cmd/benchtable.
bench:
	@mkdir -p .bench
	@date +%s > .bench/start
	@{ echo "date:    $$(date -u '+%Y-%m-%d %H:%M UTC')"; \
	  echo "machine: $$(uname -m), $$(getconf _NPROCESSORS_ONLN) cores, $$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"; \
	} > .bench/raw.txt
	$(GO) test -run '^$$' -bench '^Benchmark(ArchivePage|Feed304|CreateContact|Import)$$' -benchtime $(BENCHTIME) -timeout 10m ./contacts/ 2>&1 | tee -a .bench/raw.txt
	$(GO) test -run '^$$' -bench '^Benchmark(Propagation|EndToEnd|CatchUp|Snapshot|Mail|ResidentMemory|FanOut)$$' -benchtime $(E2E_BENCHTIME) -timeout 20m ./e2e/ 2>&1 | tee -a .bench/raw.txt
	$(GO) test -v -run '^$$' -bench '^Benchmark(Anchor(Propagation|EndToEnd)|Postgres(Writes|Propagation))$$' -benchtime $(E2E_BENCHTIME) -timeout 10m ./e2e/ 2>&1 | tee -a .bench/raw.txt
	$(GO) test -run '^$$' -bench '^Benchmark(ReplicaPropagation|ReplicaWrites|Failover|ArchiveThroughNginx)$$' -benchtime $(REPLICA_BENCHTIME) -timeout 10m ./e2e/ 2>&1 | tee -a .bench/raw.txt
	@echo; head -n 2 .bench/raw.txt; echo
	@$(GO) run ./e2e/cmd/benchtable .bench/raw.txt
	@echo "make bench took $$(( $$(date +%s) - $$(cat .bench/start) )) s; raw output in .bench/raw.txt"

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin data .bench
