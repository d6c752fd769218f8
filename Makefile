# pvekit: one Makefile for every program, the tests, the benchmarks and the package.
#
#   make            build every program into $(BUILD)/
#   make check      install missing test dependencies, build, run the whole suite:
#                   tests/bats, then tests/system (the package booted under
#                   systemd; SYSTEM_TESTS=0 leaves it out, TESTS=... too)
#   make system-test the package on a Debian 12 booted with systemd as PID 1
#   make asan       the same suite against an ASan+UBSan build in build-asan/
#   make fuzz       build the parser fuzzers (clang) and run each for FUZZ_SECONDS
#   make bench      our tools side by side with the baselines they replace
#   make demo       the migration monitor in a sandbox, end to end
#   make deb        the Debian package, checked with lintian
#   make lint       cppcheck, mandoc -T lint, systemd-analyze verify
#   make install    DESTDIR-aware install (used by debian/rules)

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share/pvekit
DOCDIR     ?= $(PREFIX)/share/doc/pvekit
SYSCONFDIR ?= /etc
UNITDIR    ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
VERSION    ?= $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null || echo 0.0.0)
BUILD      ?= build

PKGS       := libcurl jansson libmnl openssl
CFLAGS     ?= -g -O2
WARN       := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla
ifeq ($(WERROR),1)
WARN       += -Werror
endif
override CFLAGS   += -std=c11 $(WARN)
override CPPFLAGS += -D_GNU_SOURCE -DPVEKIT_VERSION=\"$(VERSION)\" -Ilib \
                     $(shell pkg-config --cflags $(PKGS))
override LDFLAGS  += -Wl,--as-needed
LDLIBS     += $(shell pkg-config --libs $(PKGS))

# A program is cmd/NAME.c, or cmd/NAME/*.c when it needs more than one file.
TOOLS_SINGLE := $(patsubst cmd/%.c,%,$(wildcard cmd/*.c))
TOOLS_DIR    := $(patsubst cmd/%/,%,$(sort $(dir $(wildcard cmd/*/*.c))))
TOOLS        := $(sort $(TOOLS_SINGLE) $(TOOLS_DIR))
PROGS        := $(addprefix $(BUILD)/,$(TOOLS))

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libpvekit.a

MANPAGES := $(wildcard man/*.[1-8])
UNITS    := $(wildcard systemd/*.service systemd/*.timer)
HOOKS    := $(wildcard share/hooks/*)

all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# Made anew each time: an object of a file that left lib/ must not linger.
$(LIB_A): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(foreach t,$(TOOLS_SINGLE),$(eval $(BUILD)/$(t): $(BUILD)/cmd/$(t).o $(LIB_A)))
$(foreach t,$(TOOLS_DIR),$(eval $(BUILD)/$(t): $(patsubst %.c,$(BUILD)/%.o,$(wildcard cmd/$(t)/*.c)) $(LIB_A)))

$(PROGS):
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB_A) $(LDLIBS)

# build/system holds the system tests' Debian root: its *.d are no make files.
-include $(shell find $(BUILD) -path $(BUILD)/system -prune -o -name '*.d' -type f -print 2>/dev/null)

deps:
	@.ci/deps

# Each runner ends with "N passed, N failed"; check adds them up into one
# such line (a runner that ended without one counts as a failure).
check: deps all
	@{ PVEKIT_BUILD=$(abspath $(BUILD)) tests/run $(TESTS); \
	  if [ -z "$(TESTS)" ] && [ "$(SYSTEM_TESTS)" != 0 ]; then tests/system/run; fi; } | \
	  awk -v want=$(if $(TESTS),1,$(if $(filter 0,$(SYSTEM_TESTS)),1,2)) \
	    '/^[0-9]+ passed, [0-9]+ failed/ { p += $$1; f += $$3; s += $$5; n++; next } { print; fflush() } \
	     END { if (n < want) { print "check: " want - n " runner(s) ended without a result"; f++ } \
	           printf "%d passed, %d failed%s\n", p, f, s ? sprintf(", %d skipped", s) : ""; exit (f > 0) }'

system-test: deps
	@tests/system/run $(SYSTEM_TESTS_FILES)

asan:
	@.ci/deps
	$(MAKE) BUILD=build-asan CC=clang \
		CFLAGS='-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all' \
		LDFLAGS='-fsanitize=address,undefined'
	@PVEKIT_BUILD=$(abspath build-asan) PVEKIT_SANITIZED=1 \
		ASAN_OPTIONS=exitcode=86:detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1 \
		tests/run $(TESTS)

FUZZ_SECONDS ?= 20
FUZZERS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
fuzz:
	@.ci/deps
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS='-g -O1 -fsanitize=fuzzer-no-link,address,undefined' $(addprefix build-fuzz/lib/,$(notdir $(LIB_OBJ)))
	@set -e; for f in $(FUZZERS); do \
		clang $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -o build-fuzz/$$f tests/fuzz/$$f.c \
			$(addprefix build-fuzz/lib/,$(notdir $(LIB_OBJ))) $(LDLIBS); \
		mkdir -p tests/fuzz/corpus-$$f; \
		echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
		rc=0; build-fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			tests/fuzz/corpus-$$f tests/fuzz/seeds/$${f#fuzz-} >build-fuzz/$$f.log 2>&1 || rc=$$?; \
		grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY|Done)' build-fuzz/$$f.log; \
		if [ $$rc -ne 0 ]; then echo "fuzz: $$f failed (exit $$rc), see build-fuzz/$$f.log"; exit 1; fi; \
	done

bench: deps all
	@PVEKIT_BUILD=$(abspath $(BUILD)) bench/run $(BENCH)

demo: deps all
	@PVEKIT_BUILD=$(abspath $(BUILD)) demo/demo.sh

deb:
	@.ci/deps
	dpkg-buildpackage -us -uc -b
	@mkdir -p $(BUILD)/deb && mv ../pvekit_$(VERSION)_*.deb ../pvekit-dbgsym_$(VERSION)_*.deb \
		../pvekit_$(VERSION)_*.buildinfo ../pvekit_$(VERSION)_*.changes $(BUILD)/deb/ 2>/dev/null; true
	lintian -I -E --pedantic --fail-on warning,error $(BUILD)/deb/pvekit_$(VERSION)_*.changes

lint: all
	cppcheck --enable=warning,style,performance,portability --std=c11 --error-exitcode=1 \
		--inline-suppr --quiet -D__linux__ -D_GNU_SOURCE -Ilib --suppress=missingIncludeSystem cmd lib
	mandoc -T lint -W warning $(MANPAGES)
	@out=$$(systemd-analyze verify --man=no $(UNITS) 2>&1 | grep -v 'Command .* is not executable' ); \
		if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
	@for h in $(HOOKS) demo/*.sh .ci/run .ci/deps tests/run bench/run tests/fakes/pmxcfs-sim tests/system/run tests/system/mkroot; do \
		sh -n $$h 2>/dev/null || bash -n $$h || exit 1; done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/hooks $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/pvekit/up.d $(DESTDIR)$(SYSCONFDIR)/pvekit/down.d
	install -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	@set -e; for m in $(MANPAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	$(if $(UNITS),install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/)
	$(if $(HOOKS),install -m 0755 $(HOOKS) $(DESTDIR)$(DATADIR)/hooks/)
	@if [ -d share/examples ]; then install -d $(DESTDIR)$(DOCDIR)/examples && \
		install -m 0644 share/examples/* $(DESTDIR)$(DOCDIR)/examples/; fi

# build/system, the system tests' Debian root (tests/system/mkroot), is a
# cache that takes minutes to make: clean keeps it (dpkg-buildpackage runs
# clean too), clean-system removes it.
clean:
	rm -rf build-asan build-fuzz
	@if [ -d $(BUILD) ]; then find $(BUILD) -mindepth 1 -maxdepth 1 ! -name system -exec rm -rf {} +; fi

clean-system:
	rm -rf $(BUILD)/system

.PHONY: all deps check system-test asan fuzz bench demo deb lint install clean clean-system
