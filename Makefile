# cext3 — entry point for building, testing and the demo.
#
#   make            release build in build/
#   make sanitize   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
#   make test       sanitizer build, then every unit and integration test (ctest)
#   make demo       release build, then the end-to-end demo on an embedded default
#   make bench      the benchmark scripts under scripts/bench/
#   make crash-test the full crash-state sweeps (long; make test runs a sample)
#   make torture    kill -9 rounds of three writing nodes: ROUNDS=N (default 50)
#   make install    install the programs and man pages under PREFIX (default /usr/local),
#                   and the mount helper as /sbin/mount.cext3
#
# Every target first makes sure the Debian packages are there: as root it
# installs what is missing, otherwise it prints the exact command to run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CTEST_ARGS ?=
KEEP_GOING ?= 0

.PHONY: all deps release sanitize test demo bench crash-test torture install clean

all: release

deps:
	@sh scripts/install-deps.sh --ensure

release: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

sanitize: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCEXT3_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# Tests run on the sanitizer build: a memory error anywhere fails the run.
test: sanitize
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

demo: release
	bash scripts/demo.sh $(BUILD)

bench: release
	@for b in scripts/bench/*.sh; do echo "== $$b"; bash $$b $(BUILD) || exit 1; done

crash-test: sanitize
	CEXT3_CRASH_FULL=1 $(MAKE) --no-print-directory test CTEST_ARGS="-R crash"

# The release build: many rounds in reasonable time. KEEP_GOING=1 counts
# failed rounds instead of stopping at the first.
ROUNDS ?= 50
torture: release
	CEXT3_BIN=$(abspath $(BUILD)) CEXT3_SRC=$(CURDIR) CEXT3_SCRATCH=$(abspath $(BUILD))/scratch \
	  CEXT3_TORTURE_ROUNDS=$(ROUNDS) CEXT3_TORTURE_KEEP_GOING=$(KEEP_GOING) \
	  bash tests/integration/jcoord_fs_torture.sh

install: release
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(BUILD)/clusterify $(BUILD)/jcoord $(DESTDIR)$(PREFIX)/sbin/
	ln -sf clusterify $(DESTDIR)$(PREFIX)/sbin/fsck.cext3
	# mount(8) looks for its helpers in /sbin only, whatever PREFIX is.
	install -d $(DESTDIR)/sbin
	sed 's|@JCOORD@|$(PREFIX)/sbin/jcoord|' scripts/mount.cext3 >$(DESTDIR)/sbin/mount.cext3
	chmod 0755 $(DESTDIR)/sbin/mount.cext3
	for m in docs/*.8; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/; done; true
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/cext3
	sed 's|/usr/local/sbin|$(PREFIX)/sbin|' scripts/systemd/jcoord@.service >$(DESTDIR)$(PREFIX)/lib/systemd/system/jcoord@.service
	install -m 0644 docs/jcoord.yaml.example $(DESTDIR)$(PREFIX)/share/doc/cext3/

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
