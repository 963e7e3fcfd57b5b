# creditgate — build, test, run. `make` builds, `make test` runs every test, `make run` serves.
# BUILD selects the output folder so sanitizer and plain builds live side by side.
BUILD   ?= build
CC      ?= cc
PKGS    := libfyaml jansson libmicrohttpd sqlite3 libsodium
WERROR  ?= -Werror
SAN     ?=
OPT     ?= -O2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  := -std=c17 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wshadow -Wstrict-prototypes \
           -Wno-missing-field-initializers $(WERROR) -Iinclude $(PKG_CFLAGS) $(SAN) -MMD -MP
LDLIBS  := $(PKG_LIBS) -lpthread -lm
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

LIB_SRC  := $(sort $(wildcard src/util/*.c src/policy/*.c src/engine/*.c src/ledger/*.c \
                              src/store/*.c src/http/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
BENCH_SRC := $(sort $(wildcard bench/*/main.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libcreditgate.a
CLI      := $(BUILD)/creditgate
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_BIN := $(patsubst bench/%/main.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps test test-unit test-asan test-valgrind run bench clean
all: deps $(CLI) $(TEST_BIN) $(BENCH_BIN)

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CLI): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testlib.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB) $(TEST_LIBS) $(LDLIBS)

$(BUILD)/bench/%: bench/%/main.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# Every test: unit tests and CLI tests on the plain build, again under ASan+UBSan, and the
# engine, policy and CLI tests under valgrind memcheck.
test: deps
	$(MAKE) test-unit
	$(MAKE) test-asan
	$(MAKE) test-valgrind

test-unit: $(CLI) $(TEST_BIN)
	@BUILD=$(BUILD) tests/run.sh

test-asan:
	$(MAKE) BUILD=$(BUILD)/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  test-unit

test-valgrind: $(CLI) $(TEST_BIN)
	@BUILD=$(BUILD) VALGRIND=1 tests/run.sh tests/util/ tests/policy/ tests/engine/ test_quote_cli

run: all
	@scripts/run.sh

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
