# Walytic Appliance — build, run, test, bench, package.
GO            ?= go
BIN           := bin/walytic
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT        ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK   := $(shell $(GO) env GOPATH)/bin/staticcheck
STATICCHECK_VERSION := v0.8.2
DATA_DIR      ?= ./walytic-data
LISTEN        ?= 127.0.0.1:8080

export CGO_ENABLED := 0

.PHONY: build run test bench lint vet staticcheck fuzz clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/walytic

run: build
	$(BIN) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Every test: formatting, vet, staticcheck, then the unit, fuzz-seed and
# end-to-end tests under the race detector (the race detector needs cgo).
test: lint vet staticcheck
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

# Go benchmarks, then the load benchmarks against the real binary; prints a table.
# The load benchmarks measure their targets in alternated windows once, in the
# parent benchmark, and report them in sub-benchmarks, hence -benchtime 1x:
# WALYTIC_BENCH_ROUNDS windows per target (4) of WALYTIC_BENCH_SECONDS (5).
bench: build
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench . -skip '^Benchmark(SendPath|Webhooks)$$' -benchmem -count=1 -timeout 30m ./... | tee bench.out
	CGO_ENABLED=1 WALYTIC_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench '^Benchmark(SendPath|Webhooks)$$' -benchtime 1x -benchmem -count=1 -timeout 30m ./cmd/walytic/internal/loadbench | tee -a bench.out
	@$(GO) run ./cmd/walytic/internal/benchtable < bench.out

# Run one fuzz target for a while: make fuzz PKG=./appliance/apikey FUZZ=FuzzParse
fuzz:
	$(GO) test -run '^$$' -fuzz '^$(FUZZ)$$' -fuzztime 60s $(PKG)

clean:
	rm -rf bin dist bench.out
