# taskerd — the two commands a newcomer needs are `make dev` and `make test`.
# Tools are pinned here and fetched by `go run`, never installed by hand.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKG         := github.com/taskerd/taskerd
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
GOFILES      = $(shell git ls-files --cached --others --exclude-standard '*.go')

.PHONY: dev test build check fmt-check vet staticcheck go-test postgres clean

## dev: run taskerd on a private PostgreSQL under ./.taskerd/pg (Ctrl-C stops both)
dev: postgres build
	TASKER_LOG_FORMAT=$${TASKER_LOG_FORMAT:-text} ./bin/taskerd dev

## test: formatting, vet, staticcheck, then every test under -race on a real PostgreSQL
test: postgres check go-test

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

go-test:
	$(GO) test -race -count=1 -timeout 15m ./...

postgres:
	@./scripts/ensure-postgres.sh

clean:
	rm -rf bin
