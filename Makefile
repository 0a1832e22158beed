# taskerd — the two commands a newcomer needs are `make dev` and `make test`.
# Tools are pinned here and fetched by `go run`, never installed by hand.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
SWAG        := github.com/swaggo/swag/cmd/swag@v1.16.6
# Where `make swagger` writes the OpenAPI document; the staleness test
# points it at a temporary folder and compares.
SWAGGER_OUT ?= docs/swagger
GQLGEN      := github.com/99designs/gqlgen@v0.17.98
# The module copy `make graphql` regenerates; the staleness test points it
# at a temporary copy and compares.
GRAPHQL_ROOT ?= $(CURDIR)
PKG         := github.com/taskerd/taskerd
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
GOFILES      = $(shell git ls-files --cached --others --exclude-standard '*.go')

.PHONY: dev test build bench check fmt-check vet staticcheck go-test postgres chromium swagger graphql graphql-check events-doc e2e-ui clean fuzz chaos load

## dev: run taskerd on a private PostgreSQL under ./.taskerd/pg (Ctrl-C stops both)
dev: postgres build
	TASKER_LOG_FORMAT=$${TASKER_LOG_FORMAT:-text} ./bin/taskerd dev

## test: formatting, vet, staticcheck, then every test under -race on a real PostgreSQL
## (with Chromium installed when root, so the Swagger UI browser test runs too)
test: postgres chromium check go-test

## build: the static binary in ./bin/taskerd
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/taskerd ./cmd/taskerd

check: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# Tests keep their artifacts (the Swagger UI screenshots) in .test-output/.
go-test:
	@mkdir -p .test-output
	$(GO) test -race -count=1 -timeout 15m -artifacts -outputdir $(CURDIR)/.test-output ./...

postgres:
	@./scripts/ensure-postgres.sh

chromium:
	@./scripts/ensure-chromium.sh >/dev/null

## swagger: regenerate the OpenAPI document (docs/swagger) from the handlers' annotations
swagger:
	$(GO) run $(SWAG) init --quiet --generalInfo apidocs.go \
		--dir internal/api,internal/registry,internal/health,internal/store,internal/workers,internal/webhooks,internal/events --parseInternal \
		--overridesFile docs/swagger/overrides.swaggo --packageName swagger --output $(SWAGGER_OUT)

## graphql: regenerate the GraphQL server (internal/graphql/gen, model) from internal/graphql/schema.graphqls
graphql:
	cd $(GRAPHQL_ROOT)/internal/graphql && $(GO) run $(GQLGEN) generate

## graphql-check: fail when the generated GraphQL code is not what `make graphql` makes now (CI)
graphql-check:
	TASKER_GQLGEN_CHECK=1 $(GO) test -count=1 -run 'TestGenerated' ./internal/graphql/

## events-doc: regenerate docs/events.md from the event catalog (internal/events); a test fails when it is stale
events-doc:
	$(GO) run ./internal/events/gendoc docs/events.md

## e2e-ui: open the Swagger UI and the GraphQL playground in headless Chromium against the real binary (screenshot in .test-output/)
e2e-ui: postgres chromium
	@mkdir -p .test-output
	$(GO) test -count=1 -run 'TestSwaggerUI|TestGraphQLPlayground' -artifacts -outputdir $(CURDIR)/.test-output ./cmd/taskerd/

## bench: every benchmark workload through the real server, PostgreSQL with fsync on (a few minutes),
## then the throughput workload again under the CPU profiler, in a run of its own: sampling slows
## taskerd, so the judged figures (docs/bench/latest.json) are taken without it
bench: postgres build
	mkdir -p docs/bench
	./bin/taskerd bench --json docs/bench/latest.json
	@echo "profiling the throughput workload (a separate run; its figures go to docs/bench/profiled.txt)"
	./bin/taskerd bench --workload throughput --cpuprofile docs/bench/cpu.prof > docs/bench/profiled.txt
	@echo "profile: go tool pprof -top bin/taskerd docs/bench/cpu.prof"

## fuzz: every fuzz target (found by go test -list) for FUZZTIME each, e.g. make fuzz FUZZTIME=5m;
## a crash is written to the target's testdata/fuzz folder (check it in: it becomes a seed)
FUZZTIME         ?= 30s
FUZZMINIMIZETIME ?= 5s
fuzz: postgres
	GO=$(GO) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) ./scripts/fuzz.sh $(FUZZTIME)

## chaos: 500 tasks x 10 steps on three replicas, one killed with SIGKILL every ~2 s (20 kills) and
## every database session terminated 5 times; prints the figures (make test runs 50 tasks, 2 kills, 1 cut)
CHAOS_TASKS ?= 500
CHAOS_KILLS ?= 20
CHAOS_CONNECTION_KILLS ?= 5
chaos: postgres
	TASKER_CHAOS_TASKS=$(CHAOS_TASKS) TASKER_CHAOS_KILLS=$(CHAOS_KILLS) TASKER_CHAOS_CONNECTION_KILLS=$(CHAOS_CONNECTION_KILLS) \
		$(GO) test -count=1 -timeout 30m -v -run '^TestChaos$$' ./cmd/taskerd/

## load: LOAD_DURATION (60s) of mixed API traffic at 200 requests/s on loopback against one replica;
## prints p50/p99 per route and fails when a request failed or the replica kept goroutines or heap
## (make test runs it for one second)
LOAD_DURATION ?= 60s
load: postgres build
	./bin/taskerd bench --workload load --duration $(LOAD_DURATION)

clean:
	rm -rf bin
