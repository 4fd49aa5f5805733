# tinybms-gw: `make run` (gateway on the built-in simulator), `make test` (whole suite),
# `make bench` (figures). Each first installs missing Debian packages (scripts/install-deps).
MAKEFLAGS   += --no-print-directory
RELEASE_DIR ?= build/release
TEST_DIR    ?= build/test
JOBS        ?= 2
DATA_DIR    ?= var
RUN_ARGS    ?=
# The demo: a discharging battery, CAN frames written to a candump log instead of a bus.
DEMO_ARGS   ?= --sim-arg=--scenario=discharge --can log:$(DATA_DIR)/can.log
PREFIX      ?= /usr/local

.PHONY: all deps build run test bench install clean

all: build

deps:
	@scripts/install-deps

# Only the programs: tests are built (with sanitizers) by `make test`.
build: deps
	@cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(RELEASE_DIR) -j$(JOBS) --target tinybms-gw tinybms-sim

run: build
	@mkdir -p $(DATA_DIR)
	$(RELEASE_DIR)/tinybms-gw --simulate --data-dir $(DATA_DIR) $(DEMO_ARGS) $(RUN_ARGS)

test: deps
	@cmake -S . -B $(TEST_DIR) -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_DIR) -j$(JOBS)
	cd $(TEST_DIR) && ctest --output-on-failure -j$(JOBS)

bench: build
	@cmake --build $(RELEASE_DIR) -j$(JOBS) --target bench_all
	@scripts/run-bench $(RELEASE_DIR)

install: build
	cmake --install $(RELEASE_DIR) --prefix $(PREFIX)

clean:
	rm -rf build
