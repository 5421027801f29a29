# daihuo: `make run` starts a single box; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
CARGO ?= cargo
RELEASE := target/release

.PHONY: run build deb test check fmt clippy deny bench deps test-deps bench-deps clean

run: deps build
	@scripts/print-usage.sh
	exec $(RELEASE)/daihuo-edge $(if $(CONFIG),--config $(CONFIG),)

# Two builds: one would unify features, and daihuo-edge would link the origin's Kafka sink
# (librdkafka) that only daihuo-origin needs (edge-node's `kafka` feature adds it).
# The edge embeds hls.js (its room page) from web/node_modules: fetched first, pinned.
build:
	@scripts/install-web.sh
	$(CARGO) build --release -p origin --bin daihuo-origin
	$(CARGO) build --release -p edge-node --bin daihuo-edge
	$(CARGO) build --release -p rehearsal --bin daihuo-rehearsal

# Release binaries packed by cargo-deb into target/debian/ ($CARGO_TARGET_DIR/debian/):
# daihuo-edge, daihuo-origin (each with a -dbgsym.ddeb), daihuo-common and daihuo-rehearsal.
deb:
	@scripts/install-deps.sh build
	@scripts/install-cargo-deb.sh
	@$(MAKE) --no-print-directory build
	$(CARGO) deb --no-build -p edge-node
	$(CARGO) deb --no-build -p origin
	$(CARGO) deb --no-build -p edge-node --variant common
	$(CARGO) deb --no-build -p rehearsal

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test
	@scripts/install-web.sh
	@scripts/install-cargo-deb.sh
	@scripts/install-tansu.sh

bench-deps:
	@scripts/install-deps.sh bench

# Lints (with the NVENC-direct backend, which compiles without CUDA thanks to the SDK crate's
# ci-check feature), then every unit, property, corpus and end-to-end test of the workspace.
# The workspace test build builds both daemons' binaries too (edge-node's and origin's own
# integration tests need them), so the end-to-end tests take those as they are
# (DAIHUO_PREBUILT_BINARIES) instead of building them again with other features. Four test
# threads on two cores: end-to-end tests mostly wait on real-time media (they pass with both
# cores busy; a test measures in parts or events, not seconds). The vendored srt-protocol's
# own unit tests (outside the workspace) build and run meanwhile, in that idle time.
test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features hwaccel/nvenc -- -D warnings
	# Licenses, duplicate versions, sources, and advisories when their database is reachable.
	@scripts/deny.sh
	@mkdir -p target
	$(CARGO) test --workspace --lib --bins --tests --no-run
	@scripts/test-vendored.sh > target/test-vendored.log 2>&1 & vendored=$$!; \
	DAIHUO_PREBUILT_BINARIES=1 $(CARGO) test --workspace --lib --bins --tests -- --test-threads 4 \
		2>&1 | tee target/test.log; tests=$$?; \
	wait $$vendored; vendored=$$?; \
	echo "# the vendored srt-protocol's unit tests:"; cat target/test-vendored.log | tee -a target/test.log; \
	[ $$tests -eq 0 ] && [ $$vendored -eq 0 ]
	@scripts/test-summary.sh target/test.log

check: fmt clippy

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets --features hwaccel/nvenc -- -D warnings

deny:
	@scripts/deny.sh

bench: bench-deps
	$(CARGO) bench -p daihuo --bench packaging
	$(CARGO) bench -p daihuo --bench ladder
	$(CARGO) bench -p daihuo --bench edge_load
	$(CARGO) bench -p daihuo --bench events
	$(CARGO) bench -p daihuo --bench glass
	$(CARGO) bench -p daihuo --bench capacity

clean:
	$(CARGO) clean
