# The go tool is the build system; these targets are short names for it.
GO        ?= go
FUZZTIME  ?= 30s
BIN       := bin
BINARIES  := emulator simdevice invoker

.PHONY: all build test short lint fuzz demo bench conformance e2e check clean image-binaries up down cover screenshots soak deps

all: lint test

## deps: everything make check needs from the network, fetched once (Go modules and tools, npm packages, Debian's chromium)
deps:
	$(GO) mod download
	$(GO) build -o /dev/null honnef.co/go/tools/cmd/staticcheck
	bash .ci/node-deps
	bash .ci/chromium > /dev/null

## build: the three binaries into bin/
build:
	$(GO) build -o $(BIN)/ ./emulator ./simdevice ./invoker

## test: every test, with the race detector (the README's test command runs this)
test:
	$(GO) test -race -count=1 ./...

## short: the fast tests only
short:
	$(GO) test -race -short ./...

## lint: gofmt, go vet, staticcheck and the one-home-per-dependency rule (in a source archive without .git too)
lint:
	@files=$$(git ls-files '*.go' 2>/dev/null); [ -n "$$files" ] || files=$$(find . -name '*.go' -not -path './conformance/node_modules/*'); \
	out=$$(gofmt -l $$files); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@bash .ci/deps

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## e2e: the tests that run the built binaries as processes
e2e:
	$(GO) test -race -count=1 -run E2E ./...

clean:
	rm -rf $(BIN)

## check: what CI runs (the README's test command)
check: lint test conformance

## demo: the emulator, a simulated device and the invoker's reboot flow
demo: build
	bash .ci/demo

## conformance: the official Azure IoT Node.js SDKs against the emulator
conformance: build
	bash .ci/conformance

## screenshots: the dashboard's main pages, as the browser tests show them, into docs/screenshots/
screenshots: build
	SCREENSHOTS=$(CURDIR)/docs/screenshots bash .ci/conformance 18-dashboard

## soak: 2,000 devices with churn under method and telemetry load for 5 minutes, kill -9 halfway (not in check)
soak:
	SOAK=1 $(GO) test -count=1 -timeout 30m -run '^TestSoak$$' -v ./emulator 2>&1 | grep -E '^(--- |ok|FAIL)|soak:'

## bench: benchmarks, written to docs/benchmarks.md
bench:
	bash .ci/bench

## image-binaries: the binaries exactly as the Dockerfile builds them, for both platforms the published image has
image-binaries:
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -o $(BIN)/static/linux-$$arch/ ./emulator ./simdevice ./invoker || exit 1; \
	done

## up / down: the demo with docker compose (needs a Docker engine)
up:
	docker compose up --build
down:
	docker compose down -v

## cover: statement coverage of every package (the emulator's packages are covered by each other's tests too)
cover:
	$(GO) test -count=1 -coverpkg=./... -coverprofile=cover.out ./... > /dev/null
	$(GO) tool cover -func=cover.out | tail -n 1
