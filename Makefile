# tinybms-gw: `make run` (gateway on the built-in simulator), `make test` (whole suite),
# `make bench` (figures), `make soak` (10 minutes under load, figures with PASS/FAIL). Each first
# installs missing Debian packages (scripts/install-deps).
MAKEFLAGS   += --no-print-directory
RELEASE_DIR ?= build/release
TEST_DIR    ?= build/test
JOBS        ?= 2
DATA_DIR    ?= var
RUN_ARGS    ?=
# The demo: a discharging battery, CAN frames written to a candump log instead of a bus.
DEMO_ARGS   ?= --sim-arg=--scenario=discharge --can log:$(DATA_DIR)/can.log
PREFIX      ?= /usr/local
# `make fuzz`: libFuzzer targets built with clang (ASan + UBSan) in FUZZ_DIR, each run for
# FUZZ_SECONDS; FUZZ_TARGETS=slcan,config... for some only (docs/reliability.md "Fuzzing").
FUZZ_DIR     ?= build/fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
# `make valgrind` / `make tsan`: the unit and integration tests and the daemon on the simulator
# (for TOOL_SECONDS of web traffic) under Valgrind memcheck (VALGRIND_DIR, a plain build) or built
# with ThreadSanitizer (TSAN_DIR); not part of `make test` (slow). docs/reliability.md "Security".
VALGRIND_DIR ?= build/valgrind
TSAN_DIR     ?= build/tsan
TOOL_SECONDS ?= 20
# Target architecture of `make deb` and `make test-cross` (Debian names: amd64, armhf, arm64);
# empty = this machine's.
ARCH        ?=
comma       := ,
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
CROSS_ARCH   = $(filter-out $(NATIVE_ARCH),$(ARCH))

.PHONY: all deps test-deps build run test bench fuzz bundle install uninstall clean deb test-cross valgrind tsan soak size venus

all: build

deps:
	@scripts/install-deps build

test-deps:
	@scripts/install-deps test

# Only the programs: tests are built (with sanitizers) by `make test`.
build: deps
	@cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(RELEASE_DIR) -j$(JOBS) --target tinybms-gw tinybms-sim

run: build
	@mkdir -p $(DATA_DIR)
	$(RELEASE_DIR)/tinybms-gw --simulate --data-dir $(DATA_DIR) $(DEMO_ARGS) $(RUN_ARGS)

test: test-deps
	@cmake -S . -B $(TEST_DIR) -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_DIR) -j$(JOBS)
	cd $(TEST_DIR) && ctest --output-on-failure -j$(JOBS)

# Every libFuzzer target for FUZZ_SECONDS, one at a time, then a table of execs/s and coverage.
# (`make test` replays their corpora in CTest: the *_replay tests.)
fuzz: test-deps
	@cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ_DIR) -j$(JOBS) --target fuzz_all
	@scripts/run-fuzz $(FUZZ_DIR) $(FUZZ_SECONDS) $(subst $(comma), ,$(FUZZ_TARGETS))

# Memcheck: any invalid access or definite/indirect leak fails (cmake/valgrind.supp: library-only).
valgrind: test-deps
	@cmake -S . -B $(VALGRIND_DIR) -C cmake/valgrind.cmake >/dev/null
	@cmake --build $(VALGRIND_DIR) -j$(JOBS)
	@tests/security/run-valgrind $(VALGRIND_DIR) $(TOOL_SECONDS) $(JOBS)

# ThreadSanitizer (gcc): any race report fails (cmake/tsan.supp: library-only).
tsan: test-deps
	@cmake -S . -B $(TSAN_DIR) -C cmake/tsan.cmake >/dev/null
	@cmake --build $(TSAN_DIR) -j$(JOBS)
	@tests/security/run-tsan $(TSAN_DIR) $(TOOL_SECONDS) $(JOBS)

bench: build
	@cmake --build $(RELEASE_DIR) -j$(JOBS) --target bench_all
	@scripts/run-bench $(RELEASE_DIR)

# `make soak`: the release gateway for SOAK_SECONDS under a busy installation's load (two packs
# polled every 100 ms, 100 WebSocket clients, 200 REST requests/s, MQTT, CAN slcan, D-Bus), then
# a table of figures with PASS/FAIL per target (docs/reliability.md "Load and soak"). Not part of
# `make test`: its figures depend on the machine's load.
SOAK_SECONDS ?= 600
soak: build
	@scripts/install-deps test
	@SOAK_SECONDS=$(SOAK_SECONDS) TINYBMS_GW=$(RELEASE_DIR)/tinybms-gw \
	  TINYBMS_SIM=$(RELEASE_DIR)/tools/tinybms-sim/tinybms-sim /usr/bin/python3 soak/soak.py

# An update bundle of the release build: build/bundle/tinybms-gw-<version>-<arch>.tar (sign it with
# scripts/sign-update.sh BUNDLE KEY; docs/updates.md).
bundle: build
	@cmake --build $(RELEASE_DIR) -j$(JOBS) --target bundle

# Only what running needs: the programs, the unit and its system user, the docs.
install: build
	cmake --install $(RELEASE_DIR)

# Removes what `make install` put in place (the data in /var/lib/tinybms-gw stays).
uninstall:
	@test -f $(RELEASE_DIR)/install_manifest.txt || { echo "nothing installed from $(RELEASE_DIR)"; exit 1; }
	-systemctl disable --now tinybms-gw 2>/dev/null
	xargs -d '\n' rm -fv < $(RELEASE_DIR)/install_manifest.txt
	-systemctl daemon-reload 2>/dev/null

# build/deb/tinybms-gw_<version>_<arch>.deb with dpkg-buildpackage, checked by lintian
# (docs/dev/packaging.md); ARCH=armhf or arm64 cross-builds it.
deb:
	@scripts/install-deps deb
	@$(if $(CROSS_ARCH),scripts/install-deps cross $(CROSS_ARCH))
	@JOBS=$(JOBS) packaging/build-deb $(ARCH)

# The unit tests (ctest label "unit") cross-built for ARCH=armhf or arm64 and run under qemu-user
# (cmake/toolchain-ARCH.cmake; no binfmt). CROSS_LABEL=integration or CROSS_LABEL= for others.
CROSS_LABEL ?= unit
test-cross:
	@$(if $(CROSS_ARCH),,$(error make test-cross needs ARCH=armhf or ARCH=arm64))
	@scripts/install-deps cross $(CROSS_ARCH)
	@JOBS=$(JOBS) packaging/test-cross $(CROSS_ARCH) "$(CROSS_LABEL)"

# `make size`: the portable core built for a bare-metal Cortex-M4F (cmake/toolchain-cortex-m4.cmake,
# packaging/mcu/), flash and RAM per module, PASS/FAIL against SIZE_BUDGET bytes of flash.
# `make venus`: build/venus/tinybms-gw-<version>-venus-armhf.tar.gz for a Venus OS GX, checked under
# qemu-arm (docs/dev/packaging.md).
SIZE_DIR    ?= build/size
SIZE_BUDGET ?= 32768
size:
	@scripts/install-deps mcu
	@cmake -S packaging/mcu -B $(SIZE_DIR) -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/toolchain-cortex-m4.cmake >/dev/null
	@cmake --build $(SIZE_DIR) -j$(JOBS) >/dev/null
	@packaging/mcu/size-report $(SIZE_DIR)/core_image.elf $(SIZE_DIR)/core_image.map $(SIZE_BUDGET)
venus:
	@scripts/install-deps cross armhf
	@scripts/install-deps venus
	@JOBS=$(JOBS) packaging/build-venus

clean:
	rm -rf build
