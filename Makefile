# syndic: three services that talk through Atom feeds. See README.md.
GO ?= go
TEST_DATABASE_URL ?=
BENCHTIME ?= 2s

.PHONY: build run test bench lint clean

build:
	$(GO) build -o bin/ ./...

run: build
	$(GO) tool goreman -rpc-server=false -set-ports=false start

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 30m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin data
