# syntax=docker/dockerfile:1
#
# taskerd's container image: a static binary on distroless, run as a
# non-root user, with `taskerd serve` as its entrypoint.
#
#   docker build -t taskerd --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -e TASKER_DATABASE_URL=postgres://… -e TASKER_AUTH_MODE=jwt … -p 8080:8080 taskerd
#   docker run --rm -e TASKER_DATABASE_URL=postgres://… taskerd migrate up   (the arguments replace "serve")
#
# Probes: GET /tasker/health/live (liveness) and GET /tasker/health/ready
# (readiness: database reachable, schema migrated) on TASKER_HTTP_ADDR
# (:8080). The image has no shell or curl, so its HEALTHCHECK runs
# /usr/local/bin/taskerd-probe (deploy/probe), a few kilobytes of Go that
# GETs the ready path and exits 0 or 1.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Set by `make image` (or by hand) the way the Makefile's build target sets them.
ARG VERSION=dev
ARG COMMIT=unknown
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath \
      -ldflags "-s -w -X github.com/taskerd/taskerd/internal/version.Version=${VERSION} -X github.com/taskerd/taskerd/internal/version.Commit=${COMMIT}" \
      -o /out/taskerd ./cmd/taskerd && \
    go build -trimpath -ldflags "-s -w" -o /out/taskerd-probe ./deploy/probe

# distroless/static: CA certificates, tzdata and /etc/passwd, nothing else;
# the :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="taskerd" \
      org.opencontainers.image.description="Workflow orchestration on PostgreSQL" \
      org.opencontainers.image.source="https://github.com/taskerd/taskerd" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/taskerd /out/taskerd-probe /usr/local/bin/
USER 65532:65532
ENV TASKER_HTTP_ADDR=:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/taskerd-probe"]
ENTRYPOINT ["/usr/local/bin/taskerd"]
CMD ["serve"]
