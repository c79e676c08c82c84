# xevf: build, test and demo. Plain make; generated code goes under $(BUILD).
#
#   make                 build the agent (build/xevf-agent)
#   make demo            live demo on a simulated host with the kubelet simulator
#   make test            every test: unit, integration, sanitizers, valgrind, fuzz smoke, lint
#   make manifests       re-render deploy/xevf.yaml from helm/xevf
#   make deps            install the Debian packages the build and tests need

BUILD     ?= build
SAN       ?=
CC        ?= cc
PKGS      := grpc libprotobuf-c libkmod libpci json-c libmicrohttpd libcurl libcrypto
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN      := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla
CFLAGS    ?= -O2 -g
ifeq ($(SAN),1)
CFLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=address,undefined
endif
ifeq ($(FUZZ),1)
CC        := clang
CFLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=address,undefined
endif
XCFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) -I$(BUILD)/gen -Idriver -Iagent \
             -DXEVF_VERSION=\"$(VERSION)\" $(shell pkg-config --cflags $(PKGS))
LIBS      := $(shell pkg-config --libs $(PKGS)) -lpthread

GEN_DIR   := $(BUILD)/gen
PROTOS    := proto/deviceplugin/v1beta1/api.proto proto/xevf/migration/v1/migration.proto
PROTO_C   := $(patsubst proto/%.proto,$(GEN_DIR)/%.pb-c.c,$(PROTOS))
PROTO_H   := $(PROTO_C:.c=.h)

DRIVER_SRC := $(wildcard driver/*.c)
AGENT_SRC  := $(filter-out agent/main.c,$(wildcard agent/*.c))
DRIVER_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(DRIVER_SRC))
AGENT_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(AGENT_SRC)) $(patsubst $(GEN_DIR)/%.c,$(BUILD)/obj/gen/%.o,$(PROTO_C))

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all agent unit-tests fuzzers test-vm test test-unit test-integration test-asan test-valgrind test-fuzz test-helm manifests \
        lint demo deps clean
all: agent
agent: $(BUILD)/xevf-agent

# protoc-c's own RPC stubs are not used (gRPC C core is the transport), and the
# stub it writes for Registration.Register is a struct member named `register`,
# a C keyword. So C is generated from a copy without the service blocks; the
# messages, and so the wire format, are the same.
$(GEN_DIR)/%.pb-c.c $(GEN_DIR)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN_DIR) $(BUILD)/proto-msgs/$(dir $*)
	awk '/^service /{skip=1} skip && /^}/{skip=0; next} !skip' $< > $(BUILD)/proto-msgs/$*.proto
	protoc-c --proto_path=$(BUILD)/proto-msgs --c_out=$(GEN_DIR) $(BUILD)/proto-msgs/$*.proto

$(BUILD)/obj/gen/%.o: $(GEN_DIR)/%.c $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -I$(GEN_DIR) $(shell pkg-config --cflags libprotobuf-c) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_H) $(wildcard driver/*.h agent/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"; $(CC) $(CFLAGS) $(XCFLAGS) -c $< -o $@

$(BUILD)/libxevf-driver.a: $(DRIVER_OBJ)
	ar rcs $@ $^

$(BUILD)/libxevf-agent.a: $(AGENT_OBJ)
	ar rcs $@ $^

$(BUILD)/xevf-agent: $(BUILD)/obj/agent/main.o $(BUILD)/libxevf-agent.a $(BUILD)/libxevf-driver.a
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/testutil.h $(BUILD)/libxevf-agent.a $(BUILD)/libxevf-driver.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) -Wno-missing-prototypes -DSIMHOST=\"$(CURDIR)/tests/sim/simhost.py\" \
	  $< $(BUILD)/libxevf-agent.a $(BUILD)/libxevf-driver.a $(LDFLAGS) $(LIBS) -lcmocka -o $@

unit-tests: $(UNIT_BIN)

FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libxevf-agent.a $(BUILD)/libxevf-driver.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) -fsanitize=fuzzer $< $(BUILD)/libxevf-agent.a $(BUILD)/libxevf-driver.a \
	  $(LDFLAGS) $(LIBS) -o $@
fuzzers: $(FUZZ_BIN)

# The kubelet's minimal counterpart that runs inside the real-kernel VM.
$(BUILD)/vm/kubelet_min: tests/vm/kubelet_min.c $(BUILD)/libxevf-agent.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) -Wno-missing-prototypes $< $(BUILD)/libxevf-agent.a $(LDFLAGS) $(LIBS) -o $@

test-vm: agent $(BUILD)/vm/kubelet_min
	tests/vm/run.sh $(BUILD)

# ---- tests -----------------------------------------------------------------
test-unit: unit-tests
	tests/run-unit.sh $(BUILD)

test-integration: agent
	XEVF_AGENT=$(CURDIR)/$(BUILD)/xevf-agent tests/run-integration.sh

test-asan:
	$(MAKE) BUILD=build/asan SAN=1 agent unit-tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  tests/run-unit.sh build/asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  XEVF_AGENT=$(CURDIR)/build/asan/xevf-agent XEVF_SANITIZED=1 tests/run-integration.sh

test-valgrind: agent
	XEVF_AGENT=$(CURDIR)/$(BUILD)/xevf-agent tests/run-valgrind.sh

test-fuzz:
	tests/fuzz/run.sh

# chart: helm lint/template, Kubernetes schemas, deploy/ drift, Containerfile
test-helm: agent
	tests/helm/run.sh $(BUILD)

# deploy/xevf.yaml is the chart rendered with its defaults (test-helm fails on drift)
manifests:
	tests/helm/tools.sh $(BUILD)
	tests/helm/render-deploy.sh $(BUILD)/helm-tools/helm > deploy/xevf.yaml

lint: $(PROTO_H)
	tests/lint.sh $(BUILD)

test:
	tests/run-all.sh

demo: agent
	/usr/bin/python3 tests/demo.py $(BUILD)/xevf-agent

deps:
	tests/install-deps.sh

clean:
	rm -rf build
