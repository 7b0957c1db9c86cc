# Palisade: one binary, three kinds of process. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO        ?= go
BIN       := bin/palisade
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Packages with unit tests (everything but the multi-process end-to-end suite).
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v '/e2e')
# Tools and caches that live outside the repository.
CACHE_DIR ?= /var/cache/palisade-dev

.PHONY: help build test unit e2e bench demo lint generate deps fuzz image

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install what the build and the tests need (Debian packages), if missing
	@bash scripts/deps.sh

build: ## build bin/palisade
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/palisade

# The container image: the static binary on an empty base, tagged
# IMAGE_REPO:VERSION where VERSION is the binary's, by default the chart's
# appVersion so that the chart's default image is the one built here.
IMAGE_REPO    ?= ghcr.io/palisade-sec/palisade
IMAGE_VERSION ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' deploy/helm/palisade/Chart.yaml)
IMAGE_PUSH    ?=
image: ## build the container image into bin/palisade-image (OCI layout) and bin/palisade-image.tar; IMAGE_PUSH=REGISTRY/REPO pushes it
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(IMAGE_VERSION)" -o bin/image/palisade ./cmd/palisade
	$(GO) run ./deploy/imagebuild --binary bin/image/palisade --repository $(IMAGE_REPO) \
	  --revision "$$(git rev-parse HEAD 2>/dev/null)" --layout bin/palisade-image --tarball bin/palisade-image.tar \
	  $(if $(IMAGE_PUSH),--push $(IMAGE_PUSH))

test: deps ## run every test: unit tests with -race, then the end-to-end suite
	$(MAKE) unit
	$(MAKE) e2e

unit: ## unit and privileged tests (race detector on)
	$(GO) test -race -count=1 -timeout 15m $(UNIT_PKGS)

e2e: build kube-apiserver ## end-to-end tests with real palisade processes
	PALISADE_BIN=$(CURDIR)/$(BIN) PALISADE_KUBE_APISERVER=$(KUBE_APISERVER) $(GO) test -count=1 -timeout 20m ./e2e/...

# kube-apiserver for the admission e2e test, built from the Go module proxy.
KUBE_VERSION   ?= v1.37.2
KUBE_APISERVER := $(CACHE_DIR)/kube-apiserver-$(KUBE_VERSION)
.PHONY: kube-apiserver
kube-apiserver: ## build kube-apiserver once into CACHE_DIR (10-15 min cold, instant when cached)
	@KUBE_VERSION=$(KUBE_VERSION) GO=$(GO) bash scripts/kube-apiserver.sh $(CACHE_DIR) >/dev/null

bench: deps build ## run the benchmarks and write bench/results.md
	bash scripts/bench.sh

demo: deps build ## start a local fleet on loopback and keep it running until Ctrl-C
	bash scripts/demo.sh

lint: ## gofmt and go vet (the dependency-direction test runs in make test)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

generate: deps ## regenerate eBPF objects (bpf2go) and fail if the committed output differs
	$(GO) generate ./agent/...
	@git diff --exit-code -- agent/ || { echo "generate: committed bpf2go output is stale; commit the regenerated files"; exit 1; }

fuzz: ## run each fuzz target for a short while
	bash scripts/fuzz.sh
