# The three commands of the README: make run, make test, make bench.
# Builds: build/ (gcc, optimised, -Werror) holds build/imapqd, the tests and the benchmarks;
# build-asan/ (clang, ASan+UBSan, -Werror) is the sanitizer build that the tests also run.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
# Seconds each libFuzzer target runs in `make fuzz` (`make fuzz-smoke`, part of `make test`).
FUZZ_SECONDS       ?= 600
FUZZ_SMOKE_SECONDS ?= 30
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEPS       := cmake make pkg-config gcc clang python3 curl valgrind \
              libmicrohttpd-dev libcjson-dev libcmocka-dev libssl-dev openssl libcurl4-openssl-dev
RUN_ARGS   ?=
# Peers the benchmarks compare against (tests/bench/bench_http.c runs beanstalkd,
# tests/bench/bench_imap.c its own throwaway Dovecot).
BENCH_DEPS := beanstalkd dovecot-imapd

.PHONY: all deps bench-deps build build-asan build-fuzz run test test-build test-asan test-valgrind \
        fuzz fuzz-smoke bench format clean

all: build

# Installs whichever of the Debian packages in $(1) are missing (as root, or through sudo).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEPS))

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	      -DIMAPQ_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

# Starts imapqd on its embedded defaults: data in ./imapq-data, IMAP on 127.0.0.1:1143 (with
# STARTTLS), implicit TLS on 127.0.0.1:1993, HTTPS on 127.0.0.1:8080; the first start prints the
# demo account. Unless RUN_ARGS names a --tls-cert, a self-signed pair for localhost is made once
# in the data folder (docs/tls.md).
RUN_DATA ?= imapq-data
RUN_CERT := $(RUN_DATA)/tls-cert.pem
RUN_KEY  := $(RUN_DATA)/tls-key.pem
RUN_TLS  := $(if $(findstring --tls-cert,$(RUN_ARGS)),,--tls-cert $(RUN_CERT) --tls-key $(RUN_KEY) --imaps 127.0.0.1:1993)

run: build
	@if [ -n "$(RUN_TLS)" ] && [ ! -s $(RUN_CERT) -o ! -s $(RUN_KEY) ]; then \
	  mkdir -p -m 0700 $(RUN_DATA) && \
	  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	    -keyout $(RUN_KEY) -out $(RUN_CERT) -days 365 -subj "/CN=localhost" \
	    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null) && \
	  echo "made a self-signed certificate for localhost: $(RUN_CERT)"; \
	fi
	./$(BUILD)/imapqd $(RUN_TLS) $(RUN_ARGS)

# Every test, in the optimised gcc build and in the clang ASan+UBSan build, and the unit tests
# once more under valgrind.
test: test-build test-asan test-valgrind fuzz-smoke

test-build: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-valgrind: build
	@passed=0; failed=0; for t in $(BUILD)/tests/test_*; do \
	  case $$t in *.log) continue;; esac; \
	  if valgrind -q --leak-check=full --error-exitcode=99 $$t >$$t.valgrind.log 2>&1; then \
	    passed=$$((passed + 1)); \
	  else echo "valgrind: $$(basename $$t) FAILED"; cat $$t.valgrind.log; failed=$$((failed + 1)); fi; \
	done; echo "valgrind: $$passed passed, $$failed failed"; test $$failed = 0

bench-deps:
	$(call install_missing,$(BENCH_DEPS))

bench: build bench-deps
	tests/bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# libFuzzer targets (tests/fuzz, docs/fuzzing.md): clang with -fsanitize=fuzzer,address,undefined.
FUZZ_TARGETS = $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))

build-fuzz: deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	      -DIMAPQ_FUZZ=ON >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target $(FUZZ_TARGETS)

fuzz: build-fuzz
	tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

fuzz-smoke: build-fuzz
	tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SMOKE_SECONDS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
