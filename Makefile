# tally: one plain Makefile.
#
#   make            build everything into build/
#   make test       build and run every test
#   make asan       build into build-asan/ with AddressSanitizer + UBSan and run the tests
#   make ubsan      the same with UBSan alone (build-ubsan/)
#   make bench      the side-by-side suite: engine, tally 1 and 3 replicas, PostgreSQL, one
#                   table (bench/suite.sh, docs/BENCHMARKS.md; under 30 minutes)
#   make bench-cluster  bench/cluster.sh's runs on three replicas (closed, one till, open loop)
#   make bench-pg   the same workload against PostgreSQL 15 (bench/peers/pg), as a sweep
#   make bench-scale grow a 3-replica ledger to 50M entries and plot cost against size
#   make replay     replay the real purchase histories through a 3-replica cluster and check them
#   make run        build, then start a local 3-replica cluster on loopback (see README.md)
#   make demo       build, then run the embedded-mode demonstration on var/demo
#
# Missing Debian packages are installed by the `deps` step (apt-get, as root), so a fresh Debian 12
# machine needs nothing by hand.

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2
SAN     ?=
CFLAGS  ?=
WARN    := -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Wstrict-prototypes \
           -Wmissing-prototypes -Wvla -Wformat=2 -Wundef -Werror
CPPFLAGS_ALL := -std=c11 -D_GNU_SOURCE -Iinclude -Icommon -Iengine -MMD -MP
CFLAGS_ALL   := $(OPT) -g -fno-omit-frame-pointer $(WARN) $(SAN) $(CFLAGS)
LDFLAGS_ALL  := $(SAN) $(LDFLAGS)

# Debian packages: a header that proves each one is installed.
DEPS := liblmdb-dev:/usr/include/lmdb.h \
        libxxhash-dev:/usr/include/xxhash.h \
        libcmocka-dev:/usr/include/cmocka.h \
        libcjson-dev:/usr/include/cjson/cJSON.h \
        lmdb-utils:/usr/bin/mdb_stat \
        liburing-dev:/usr/include/liburing.h \
        libuv1-dev:/usr/include/uv.h \
        libraft-dev:/usr/include/raft.h \
        libmicrohttpd-dev:/usr/include/microhttpd.h \
        clang:/usr/bin/clang \
        libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a \
        postgresql:/usr/lib/postgresql/15/bin/postgres \
        libpq-dev:/usr/include/postgresql/libpq-fe.h \
        libcsv-dev:/usr/include/csv.h \
        zlib1g-dev:/usr/include/zlib.h \
        python3:/usr/bin/python3
DEPS_STAMP := $(BUILD)/.deps-ok

COMMON_SRC := common/codes.c common/calendar.c common/ids.c common/wire.c common/hash_long.c \
              common/hash_long_avx2.c
ENGINE_SRC := $(wildcard engine/*.c)
TOOLS_LIB_SRC := tools/cli_common.c
SVG_SRC := tools/svg.c
ENGINE_LIB := $(BUILD)/libtally_engine.a
# tallyd: everything in server/ but main.c is also linked into the server tests.
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_LIBS := -luring -lraft -luv -lmicrohttpd
# libtally: the client library (client/ and the common code it needs).
CLIENT_SRC := $(wildcard client/*.c)
CLIENT_LIB := $(BUILD)/libtally.a

PROGRAMS := $(BUILD)/tally $(BUILD)/tally-audit $(BUILD)/tally-bench-engine \
            $(BUILD)/tallyd $(BUILD)/tally-drill $(BUILD)/tally-bench $(BUILD)/tally-bench-pg
TEST_SRC := $(wildcard tests/engine/test_*.c tests/common/test_*.c tests/tools/test_*.c tests/bench/test_*.c \
                       tests/server/test_*.c tests/client/test_*.c \
                       $(if $(wildcard server/main.c),tests/cluster/test_*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
# The deterministic simulation (tests/sim): SIM_SEEDS seeds in make test, SIM_LONG_SEEDS in
# make sim.
SIM := $(BUILD)/tests/sim/sim
SIM_SEEDS ?= 200
SIM_LONG_SEEDS ?= 10000
SCRIPT_TESTS := $(sort $(wildcard tests/tools/*.sh))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

.PHONY: all deps test unit-test script-test fuzz-test asan ubsan bench bench-cluster bench-pg \
        bench-scale run demo clean format fuzz faults sim sim-test replay
all: $(DEPS_STAMP) $(PROGRAMS) $(TESTS) $(SIM)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=""; for d in $(DEPS); do pkg=$${d%%:*}; file=$${d#*:}; \
	  [ -e "$$file" ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get install -y $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO apt-get install -y $$missing; } || \
	  { echo "deps: could not install$$missing"; exit 1; }; \
	fi
	@mkdir -p $(BUILD) && touch $@

# The AVX2 build of XXH3's long-input path, called only on CPUs that have AVX2 (hash_long.c).
ifeq ($(shell uname -m),x86_64)
$(call obj,common/hash_long_avx2.c): CFLAGS_ALL += -mavx2
$(call obj,common/hash_long.c): CPPFLAGS_ALL += -DTALLY_HAVE_AVX2_TU
endif

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -c $< -o $@

$(ENGINE_LIB): $(call obj,$(COMMON_SRC) $(ENGINE_SRC))
	@rm -f $@
	ar rcs $@ $^

LIBS_ENGINE := $(ENGINE_LIB) -llmdb

$(CLIENT_LIB): $(call obj,$(COMMON_SRC) $(CLIENT_SRC))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tallyd: $(call obj,server/main.c $(SERVER_SRC)) $(CLIENT_LIB) $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) $(SERVER_LIBS)

$(BUILD)/tally: $(call obj,tools/tally.c $(TOOLS_LIB_SRC)) $(ENGINE_LIB) \
                $(if $(CLIENT_SRC),$(CLIENT_LIB))
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lcjson

# tally-drill: the failover drill (docs/OPERATIONS.md), a libtally client with threads.
$(BUILD)/tally-drill: $(call obj,tools/tally_drill.c $(SVG_SRC) $(TOOLS_LIB_SRC)) $(CLIENT_LIB) $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lcjson -lpthread -lm

$(BUILD)/tally-audit: $(call obj,tools/tally_audit.c tools/audit_fold.c $(TOOLS_LIB_SRC)) $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lcjson

$(BUILD)/tally-bench-engine: $(call obj,bench/bench_engine.c bench/workload.c) $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lm

# tally-bench: the load generator against a cluster (docs/BENCHMARKS.md); links tally-audit's
# verify (tools/audit_fold.c) to check the replicas' data directories. --replay: the replay of
# real purchase histories (bench/replay*.c; libcsv and zlib read the UCI file).
REPLAY_SRC := bench/replay.c bench/replay_data.c bench/replay_model.c bench/replay_main.c
$(BUILD)/tally-bench: $(call obj,bench/tally_bench.c bench/workload.c bench/histogram.c bench/proc.c \
                      $(REPLAY_SRC) tools/audit_fold.c $(SVG_SRC) $(TOOLS_LIB_SRC)) $(CLIENT_LIB) \
                      $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lcjson -lcsv -lz -lpthread -lm

# tally-bench-pg: the same workload against the PostgreSQL peer (bench/peers/pg), via libpq.
$(call obj,bench/peers/pg/bench_pg.c): CPPFLAGS_ALL += -Ibench -I/usr/include/postgresql
$(BUILD)/tally-bench-pg: $(call obj,bench/peers/pg/bench_pg.c bench/workload.c bench/proc.c) $(ENGINE_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lpq -lpthread -lm

# Server tests link the server (but its main) and start real tallyd processes too.
$(BUILD)/tests/server/%: $(call obj,tests/server/%.c tests/support.c tools/audit_fold.c $(SERVER_SRC)) $(ENGINE_LIB) $(if $(CLIENT_SRC),$(CLIENT_LIB))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) $(SERVER_LIBS) -lcmocka -lm

# Cluster tests start real tallyd processes and talk to them through libtally.
# A static pattern rule: make must not fall back to the generic test rule below when the harness
# object is still to be built.
$(filter $(BUILD)/tests/cluster/%,$(TESTS)): $(BUILD)/tests/cluster/%: $(call obj,tests/cluster/%.c tests/cluster/harness.c tests/cluster/load.c tests/cluster/proxy.c tests/support.c tools/audit_fold.c) $(CLIENT_LIB) $(ENGINE_LIB) | $(BUILD)/tallyd $(BUILD)/tests/cluster/libfailwrite.so
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(filter-out $(BUILD)/tallyd %.so,$^) $(LIBS_ENGINE) -lcmocka -lm

# The disk-full shim preloaded into one replica by test_faults.c (never sanitized: it is loaded
# into tallyd, whose own build may be).
$(BUILD)/tests/cluster/libfailwrite.so: tests/cluster/failwrite.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -fPIC -shared -Wall -Wextra -Werror -o $@ $< -ldl

# The simulation links the engine, the server's entry codec and libraft (its raft_fixture).
$(SIM): $(call obj,tests/sim/sim.c tests/support.c tools/audit_fold.c server/batch.c server/raft_guard.c) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lraft -lcmocka -lm

# The replay's readers and model (tests/bench): no engine, libcsv and zlib.
$(call obj,tests/bench/test_replay.c): CPPFLAGS_ALL += -Ibench
$(BUILD)/tests/bench/%: $(call obj,tests/bench/%.c bench/replay_data.c bench/replay_model.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ -lcmocka -lcsv -lz

$(BUILD)/tests/client/%: $(call obj,tests/client/%.c tests/support.c tools/audit_fold.c) $(CLIENT_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ENGINE) -lcmocka -lm

$(BUILD)/tests/%: $(call obj,tests/%.c tests/support.c tools/audit_fold.c) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(call obj,tests/$*.c tests/support.c tools/audit_fold.c) $(LIBS_ENGINE) -lcmocka -lm

test: all
	@$(MAKE) --no-print-directory unit-test script-test sim-test fuzz-test

# A failed test's output, shortened: cmocka's RUN and OK lines left out, then the first 50
# lines (the first failure and what it printed) and the last 12 (the summary).
SHOW_FAILURE = grep -v -E '^\[ +(RUN|OK) +\]' | awk 'NR <= 50 { print } { t[NR % 12] = $$0 } \
  END { if (NR > 50) { print "[...]"; for (i = (NR > 61 ? NR - 11 : 51); i <= NR; i++) print t[i % 12] } }'

# Cluster tests run once per network backend (io_uring, and the epoll fallback); the epoll pass
# also commits the ledger at every entry (tallyd --commit-ms 0), the io_uring pass deferred (the
# default), so both commit paths run every cluster test.
unit-test:
	@fail=0; for t in $(TESTS); do \
	  case $$t in */tests/cluster/*) ios="uring epoll";; *) ios="auto";; esac; \
	  for io in $$ios; do \
	  printf '%-50s ' "$$t$$( [ $$io = auto ] || echo " ($$io$$( [ $$io = epoll ] && echo ', commit-ms 0'))")"; \
	  if out=$$(env TALLY_BUILD=$(BUILD) TALLY_TEST_IO=$$io \
	            $$( [ $$io = epoll ] && echo TALLY_TEST_COMMIT_MS=0) $$t 2>&1); then echo ok; \
	  else rc=$$?; if [ $$rc = 77 ]; then echo skipped; else echo FAIL; echo "$$out" | $(SHOW_FAILURE); fail=1; fi; fi; \
	  done; \
	done; exit $$fail

script-test:
	@fail=0; for t in $(SCRIPT_TESTS); do \
	  printf '%-50s ' "$$t"; \
	  if out=$$(TALLY_BUILD=$(BUILD) bash $$t 2>&1); then echo ok; \
	  else rc=$$?; if [ $$rc = 77 ]; then echo skipped; else echo FAIL; echo "$$out" | $(SHOW_FAILURE); fail=1; fi; fi; \
	done; exit $$fail

# The simulation: a fixed set of seeds (the first 3 run twice: the same fingerprint) in make
# test; many more in make sim (SIM_LONG_SEEDS, from SIM_FIRST).
SIM_FIRST ?= 1
sim-test: $(SIM)
	@$(SIM) --seeds $(SIM_SEEDS) --check 3
	@bash tests/sim/defects.sh $(SIM)

sim: $(SIM)
	@$(SIM) --first $(SIM_FIRST) --seeds $(SIM_LONG_SEEDS) --check 10

# The long fault run, on each backend: 50 leader kills and 10 pauses under load (test_faults.c),
# 12 network partitions under load, 4 of each kind (test_partition.c).
faults: all
	@for io in uring epoll; do \
	  echo "test_faults ($$io), 50 leader kills, 10 leader pauses"; \
	  TALLY_BUILD=$(BUILD) TALLY_TEST_IO=$$io TALLY_FAULT_KILLS=50 TALLY_FAULT_PAUSES=10 \
	    $(BUILD)/tests/cluster/test_faults \
	    || exit 1; \
	  echo "test_partition ($$io), 12 partitions"; \
	  TALLY_BUILD=$(BUILD) TALLY_TEST_IO=$$io TALLY_FAULT_PARTITIONS=12 \
	    $(BUILD)/tests/cluster/test_partition \
	    || exit 1; \
	done

# libFuzzer targets (tests/fuzz/): clang with ASan + UBSan, in their own build directory.
FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -Icommon -Iengine -Iserver -g -O1 \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_COMMON := common/codes.c common/calendar.c common/ids.c common/wire.c common/hash_long.c
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 10

$(FUZZ_BUILD)/fuzz_frame: tests/fuzz/fuzz_frame.c $(FUZZ_COMMON) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^

$(FUZZ_BUILD)/fuzz_batch: tests/fuzz/fuzz_batch.c server/batch.c $(ENGINE_SRC) $(FUZZ_COMMON) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -llmdb

# The request handler: the real front.c, engine and copies.c; the replica, net_send and the log
# stand in (tests/fuzz/fuzz_front.c says which and why).
$(FUZZ_BUILD)/fuzz_front: tests/fuzz/fuzz_front.c server/front.c server/copies.c server/batch.c \
                          $(ENGINE_SRC) $(FUZZ_COMMON) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $^ -llmdb -luv -lpthread

FUZZ_BINS := $(FUZZ_BUILD)/fuzz_frame $(FUZZ_BUILD)/fuzz_batch $(FUZZ_BUILD)/fuzz_front

# make fuzz: each target FUZZ_SECONDS, new inputs kept in tests/fuzz/corpus (commit them).
fuzz: $(FUZZ_BINS)
	@bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) keep

# Part of make test: a short run of each target on a scratch copy of the corpus.
fuzz-test: $(FUZZ_BINS)
	@bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) smoke

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test

ubsan:
	@$(MAKE) --no-print-directory BUILD=build-ubsan OPT=-O1 \
	  SAN="-fsanitize=undefined -fno-sanitize-recover=all" test

bench: all
	@bash bench/run.sh $(BUILD)

# The end-to-end runs on three replicas that make bench ran before the suite: closed loop with
# batches, one till, open loop (bench/cluster.sh; 4-5 minutes).
bench-cluster: all
	@bash bench/cluster.sh $(BUILD)

# The PostgreSQL peer's sweep (batch 1/100/1000 x clients 1/4/16, then the till case): a
# throw-away server on loopback (bench/peers/pg/pg.sh); about 15 minutes. Not part of make test.
bench-pg: $(BUILD)/tally-bench-pg
	@bash bench/peers/pg/sweep.sh $(BUILD)

# The scale run (bench/scale.sh): a 3-replica ledger grown to SCALE_ENTRIES entries under load,
# then a replica restarted at that size; 20-40 minutes and ~60 GB of disk for 50M entries.
SCALE_ENTRIES ?= 50000000
bench-scale: all
	@bash bench/scale.sh $(BUILD) $(SCALE_ENTRIES)

# The replay of both real purchase histories (../shared/data/retail, or REPLAY_DATA) through a
# fresh 3-replica cluster with --clock client, checked against the replay's model and audited
# (docs/BENCHMARKS.md, "Replay of real purchase histories"). REPLAY_ARGS: more tally-bench options.
REPLAY_DATA ?= ../shared/data/retail
replay: $(BUILD)/tallyd $(BUILD)/tally $(BUILD)/tally-bench
	@TALLYD_EXTRA_ARGS="--clock client" bash bench/cluster.sh $(BUILD) --replay all \
	  --data $(REPLAY_DATA) $(REPLAY_ARGS)

run: all
	@bash tools/cluster.sh $(BUILD)

demo: all
	@bash tools/demo.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-ubsan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
