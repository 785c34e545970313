# umbra — GNU make build. A newcomer runs `make run` or `make test`.
#   make            build build/umbra
#   make run        install deps, build, serve the embedded default config
#   make test       install deps, build, run every test (unit, fuzz corpora,
#                   integration, SDK)
#   make asan       the whole suite under ASan+UBSan (build-asan/)
#   make fuzz       each fuzz target for FUZZ_TIME seconds (clang, libFuzzer)
#   make leak       valgrind over a 10,000-request run: no leak, no error
#   make bench      the overhead benchmark (bench/README.md)
#   make bench-auth the cost of authentication (bench/auth.sh)
#   make bench-tunnel what the dark-service tunnel adds (bench/tunnel.sh)
#   make bench-routing what routing costs (bench/routing.sh)
#   make bench-govern budgets + rate limits + audit on vs off (bench/govern.sh)
#   make bench-translate OpenAI client to anthropic/bedrock vs pass-through (bench/translate.sh)
#   make eval       detector and routing quality on ../shared/data (docs/routing.md)
# Variants: BUILD=dir, SANITIZE=1, CC=clang, WERROR=0.

BUILD    ?= build
CC       ?= cc
WERROR   ?= 1
SANITIZE ?=
FUZZ_TIME ?= 60
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)

WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN     += -Werror
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -DUMBRA_VERSION='"$(VERSION)"' $(WARN) -Isrc -MMD -MP -pthread
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif
LIBS     := -levent_core -levent_pthreads -lcurl -lnghttp2 -lssl -lcrypto -lyaml -lsqlite3 -lpq -lpcre2-8 -lm

SRCS     := $(shell find src -name '*.c' ! -name main.c | sort)
OBJS     := $(SRCS:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libumbra.a
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/%)
PYTEST   := /usr/bin/python3 -m pytest

.PHONY: all deps run test unit integration sdk fuzz fuzz-build fuzz-replay asan leak bench bench-auth bench-tunnel bench-routing bench-govern bench-translate eval clean
all: $(BUILD)/umbra

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/umbra: $(BUILD)/obj/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -pthread $^ $(LIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LIBS) -lcmocka -lcjson -o $@

run: deps $(BUILD)/umbra
	$(BUILD)/umbra serve $(if $(CONFIG),-c $(CONFIG))

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(BUILD)/umbra
	UMBRA_BIN=$(abspath $(BUILD)/umbra) $(PYTEST) -q tests/integration

sdk: $(BUILD)/umbra
	UMBRA_BIN=$(abspath $(BUILD)/umbra) bash tests/sdk/run.sh

# Fuzz targets need clang's libFuzzer; they always build with sanitizers.
# This is also the project's clang -Werror build.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Isrc -pthread -MMD -MP \
	-fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJS := $(SRCS:%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
build-fuzz/libumbra.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/%: tests/fuzz/%.c build-fuzz/libumbra.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< build-fuzz/libumbra.a $(LIBS) -o $@

fuzz-build: $(FUZZ_BIN)

# Replaying the corpora is a normal test (no new inputs are generated).
fuzz-replay: fuzz-build
	@set -e; for f in $(FUZZ_BIN); do n=$${f#build-fuzz/fuzz_}; \
	  echo "== replay $$n"; $$f -runs=0 tests/fuzz/corpus/$$n >/dev/null 2>build-fuzz/$$n.log || { cat build-fuzz/$$n.log; exit 1; }; done

fuzz: deps fuzz-build
	@set -e; for f in $(FUZZ_BIN); do n=$${f#build-fuzz/fuzz_}; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  echo "== fuzz $$n for $(FUZZ_TIME)s"; \
	  $$f -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/$$n.dict build-fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | tail -n 2; done

test: deps
	@$(MAKE) --no-print-directory all unit fuzz-replay integration sdk

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 all unit
	UMBRA_BIN=$(abspath build-asan/umbra) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  $(PYTEST) -q tests/integration
	UMBRA_BIN=$(abspath build-asan/umbra) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  bash tests/sdk/run.sh

# valgrind over a 10,000-request mixed run (tests/leak/valgrind.sh)
leak: deps all
	UMBRA_BIN=$(abspath $(BUILD)/umbra) bash tests/leak/valgrind.sh

bench: deps all
	@scripts/install-deps.sh bench
	bash bench/run.sh
	@$(MAKE) --no-print-directory bench-auth
	@$(MAKE) --no-print-directory bench-tunnel
	@$(MAKE) --no-print-directory bench-routing
	@$(MAKE) --no-print-directory bench-govern
	@$(MAKE) --no-print-directory bench-translate

# the cost of authentication: keys / mTLS vs none, TLS handshakes (bench/README.md)
$(BUILD)/bench/authbench: bench/authbench.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< -lssl -lcrypto

bench-auth: deps all $(BUILD)/bench/authbench
	AUTHBENCH_BIN=$(abspath $(BUILD)/bench/authbench) UMBRA_BIN=$(abspath $(BUILD)/umbra) bash bench/auth.sh

# what the dark-service tunnel adds: tunnel vs direct through umbra (bench/README.md)
bench-tunnel: deps all $(BUILD)/bench/authbench
	AUTHBENCH_BIN=$(abspath $(BUILD)/bench/authbench) UMBRA_BIN=$(abspath $(BUILD)/umbra) bash bench/tunnel.sh

# what routing costs: detectors, rules and embedder per request; routed vs
# explicit end to end (bench/README.md)
bench-routing: deps all $(BUILD)/bench/authbench
	AUTHBENCH_BIN=$(abspath $(BUILD)/bench/authbench) UMBRA_BIN=$(abspath $(BUILD)/umbra) bash bench/routing.sh

# what budgets, rate limits and the audit log cost: on vs off, c=64 and c=1
bench-govern: deps all $(BUILD)/bench/authbench
	AUTHBENCH_BIN=$(abspath $(BUILD)/bench/authbench) UMBRA_BIN=$(abspath $(BUILD)/umbra) bash bench/govern.sh

bench-translate: deps all $(BUILD)/bench/authbench
	AUTHBENCH_BIN=$(abspath $(BUILD)/bench/authbench) UMBRA_BIN=$(abspath $(BUILD)/umbra) bash bench/translate.sh

# quality on the labelled data (docs/routing.md): the sensitivity detectors,
# and routing accuracy for heuristics, the builtin embedder and the cascade
eval: deps all
	sh tests/eval/pii_eval.sh
	UMBRA_BIN=$(abspath $(BUILD)/umbra) python3 tests/eval/route_eval.py

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJS:.o=.d) $(BUILD)/obj/src/main.d
-include $(FUZZ_OBJS:.o=.d)
