# cin build. `make` builds build/libcin.{a,so}, build/cin-run, build/cin-bench, build/cin-merge,
# build/cin-derive; `make test` runs the CUnit suite; `make run` installs dependencies and runs
# the main job.
CC      ?= cc
PREFIX  ?= /usr/local
BUILD   := build
PKGS    := libavdevice libavformat libavcodec libswscale libavutil yaml-0.1 jansson openblas liburing
CFLAGS  ?= -O3 -g
# CFLAGS (optimisation, sanitizers) is the user's; what the code needs is in CIN_CFLAGS.
CIN_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes -fPIC \
           -fvisibility=hidden \
           -Iengine -Iops -Iio -Igraphs -Ipipelines $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

LIB_SRC := $(wildcard engine/*.c ops/*.c io/*.c graphs/*.c pipelines/*.c)
LIB_SRC := $(filter-out pipelines/cin_run.c graphs/cin_merge.c graphs/cin_derive.c,$(LIB_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/main.o $(BUILD)/tests/util.o

SHARED  ?= $(BUILD)/libcin.so
all: $(BUILD)/libcin.a $(SHARED) $(BUILD)/cin-run $(BUILD)/cin-bench $(BUILD)/cin-merge \
     $(BUILD)/cin-derive

# Missing development packages would otherwise surface as a cascade of compiler errors.
PKGS_MISSING = $(shell for p in $(PKGS); do pkg-config --exists $$p || echo $$p; done)

# Objects are rebuilt when the compiler flags change, not only when sources do.
FLAGS_NOW := $(CC) $(CIN_CFLAGS) $(CFLAGS)
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_NOW)' | cmp -s - $@ || echo '$(FLAGS_NOW)' > $@

$(BUILD)/%.o: %.c $(BUILD)/.flags
	$(if $(PKGS_MISSING),$(error pkg-config cannot find: $(PKGS_MISSING); run 'make deps'))
	@mkdir -p $(dir $@)
	$(CC) $(CIN_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libcin.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

SONAME  := libcin.so.0
$(BUILD)/libcin.so: $(LIB_OBJ) engine/cin.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=engine/cin.map \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/cin-run: $(BUILD)/pipelines/cin_run.o $(BUILD)/libcin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cin-bench: $(BUILD)/bench/cin_bench.o $(BUILD)/libcin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cin-merge: $(BUILD)/graphs/cin_merge.o $(BUILD)/libcin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cin-derive: $(BUILD)/graphs/cin_derive.o $(BUILD)/libcin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The test runner calls test_<file>_register() for every tests/test_<file>.c.
$(BUILD)/tests/suites.h: $(TEST_SRC)
	@mkdir -p $(dir $@)
	@for f in $(TEST_SRC:tests/%.c=%); do echo "SUITE($$f)"; done > $@

$(BUILD)/tests/main.o: tests/main.c $(BUILD)/tests/suites.h
	@mkdir -p $(dir $@)
	$(CC) $(CIN_CFLAGS) $(CFLAGS) -I$(BUILD)/tests -c $< -o $@

$(BUILD)/cin-tests: $(TEST_OBJ) $(BUILD)/libcin.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcunit

# docs/example.c embeds the library as an application would: only through cin.h.
$(BUILD)/example: docs/example.c $(BUILD)/libcin.a
	$(CC) -std=c11 -Wall -Wextra -Iengine $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libcin.a \
	    $(LDLIBS) -o $@

test: all $(BUILD)/cin-tests $(BUILD)/example
	cd tests && CIN_RUN=../$(BUILD)/cin-run CIN_MERGE=../$(BUILD)/cin-merge \
	    CIN_DERIVE=../$(BUILD)/cin-derive CIN_BENCH=../$(BUILD)/cin-bench ../$(BUILD)/cin-tests
	./$(BUILD)/example
	$(if $(SHARED),@$(MAKE) --no-print-directory check-exports)

# libcin.so must export exactly the functions cin.h declares.
check-exports: $(SHARED)
	@nm -D --defined-only $(SHARED) | awk '{print $$3}' | sort > $(BUILD)/exports.txt
	@sed -n 's/^CIN_API [^(]*[ *]\(cin_[a-z_]*\)(.*/\1/p' engine/cin.h | sort | \
	    diff - $(BUILD)/exports.txt && echo "libcin.so exports the cin.h API only"

# The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer (CI runs it too);
# without the shared library, which GCC 12 cannot link from ASan objects.
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-sanitize:
	$(MAKE) BUILD=build/sanitize CFLAGS="-O1 -g $(SAN)" LDFLAGS="$(SAN)" SHARED= test

# The threaded pipeline (readers, queues, workers: the streams suite) under ThreadSanitizer.
# About 4 minutes on 2 cores, so not part of CI.
TSAN := -fsanitize=thread
test-threads:
	$(MAKE) BUILD=build/tsan CFLAGS="-O1 -g $(TSAN)" LDFLAGS="$(TSAN)" SHARED= \
	    build/tsan/cin-tests
	cd tests && TSAN_OPTIONS="suppressions=tsan.supp halt_on_error=1" \
	    ../build/tsan/cin-tests streams

# bvh_fk.py needs numpy only, so the BVH golden is written even where torch is missing.
goldens:
	/usr/bin/python3 tests/ref/bvh_fk.py
	/usr/bin/python3 tests/ref/make_goldens.py

# The main job: CoX3D-S over a real clip, one JSON line per frame, a summary on stderr. Setup
# and build talk on stderr, so stdout holds the results alone (make run > results.jsonl).
run:
	@./.ci/deps >&2
	@$(MAKE) --no-print-directory all >&2
	@echo "./$(BUILD)/cin-run pipelines/examples/walk.yaml" >&2
	@./$(BUILD)/cin-run pipelines/examples/walk.yaml

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(BUILD)/libcin.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libcin.so $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libcin.so
	install -m 644 engine/cin.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/cin-run $(BUILD)/cin-bench $(BUILD)/cin-merge $(BUILD)/cin-derive \
	    $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@PKGS@|$(PKGS)|' docs/cin.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cin.pc

.PHONY: all test check-exports test-sanitize test-threads clean deps run install goldens FORCE
clean:
	rm -rf $(BUILD)

deps:
	./.ci/deps

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/bench/cin_bench.d \
    $(BUILD)/pipelines/cin_run.d $(BUILD)/graphs/cin_merge.d $(BUILD)/graphs/cin_derive.d

# The activations' exp() loops vectorise only with -ffast-math; they handle no NaN specially.
$(BUILD)/ops/activation.o: CIN_CFLAGS += -ffast-math
