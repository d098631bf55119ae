# drctl developer and CI tasks. "make help" lists the targets.
#
# Tools are installed per project into .tools/bin at pinned versions, built
# with the local Go; Debian packages via scripts/install-deps.sh.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO        ?= go
TOOLS_BIN := $(CURDIR)/.tools/bin

VERSITYGW_VERSION   := v1.8.0
STATICCHECK_VERSION := v0.8.2
RESTIC_VERSION      := v0.18.1

# Overridable: make test TEST_FLAGS=-race, make bench BENCH_ARGS="-size 1G".
TEST_TIMEOUT ?= 20m
TEST_FLAGS   ?=
BENCH_FLAGS  ?= -benchtime=1s
BENCH_ARGS   ?=

# The S3 tests start versitygw from here.
DRCTL_VERSITYGW ?= $(TOOLS_BIN)/versitygw
export DRCTL_VERSITYGW GO TEST_TIMEOUT TEST_FLAGS

.PHONY: help build tools staticcheck bench-tools deps test lint demo bench bench-live clean

help: ## list the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z][a-z-]*:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build bin/drctl
	$(GO) build -o bin/drctl ./cmd/drctl

tools: staticcheck ## install the test tools into .tools/bin when missing: versitygw (S3 server), staticcheck
	@bash scripts/go-tool.sh $(TOOLS_BIN) github.com/versity/versitygw/cmd/versitygw $(VERSITYGW_VERSION)

staticcheck:
	@bash scripts/go-tool.sh $(TOOLS_BIN) honnef.co/go/tools/cmd/staticcheck $(STATICCHECK_VERSION) \
		|| echo "tools: staticcheck $(STATICCHECK_VERSION) did not install: make lint will skip it"

bench-tools: ## install restic into .tools/bin for the side-by-side benchmark
	@bash scripts/go-tool.sh $(TOOLS_BIN) github.com/restic/restic/cmd/restic $(RESTIC_VERSION)

deps: ## install the Debian packages the tests need when missing (QEMU, a guest kernel and busybox, qemu-utils, e2fsprogs, chromium, time, gcc for -race)
	@bash scripts/install-deps.sh

test: deps tools ## gofmt, staticcheck, go vet and go test of every package, with a summary (installs deps and tools first)
	@bash scripts/lint.sh
	@bash scripts/test.sh

lint: staticcheck ## gofmt -l, go vet, staticcheck
	@bash scripts/lint.sh

demo: build ## replicate a 256 MiB sample image, change 1%, replicate again, restore, compare
	@bash scripts/demo.sh

bench: build bench-tools ## Go benchmarks, then drctl vs restic side by side on a 2 GiB ext4 image (BENCH_ARGS=...)
	$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./...
	$(GO) run ./internal/benchtool compare -drctl bin/drctl -restic $(TOOLS_BIN)/restic -cache .cache/bench $(BENCH_ARGS)

bench-live: build bench-tools deps ## a running QEMU VM (dirty bitmaps) vs restic on the same disk image
	$(GO) run ./internal/benchtool live -drctl bin/drctl -restic $(TOOLS_BIN)/restic -cache .cache/bench

clean: ## remove bin/ and the demo, test and bench work files (keeps .tools and cached bench images)
	rm -rf bin .cache/demo .cache/test
	rm -rf .cache/bench/run-*
