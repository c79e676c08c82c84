# xevf: build, test and demo. Plain make; generated code goes under $(BUILD).
#
#   make                 build the agent (build/xevf-agent)
#   make demo            live demo on a simulated host with the kubelet simulator
#   make bench           speed and memory figures against their targets (a table)
#   make test            every test: unit, integration, sanitizers, valgrind, fuzz smoke, lint
#   make install         install the agent under $(DESTDIR)$(PREFIX)/bin
#   make manifests       re-render deploy/xevf.yaml from helm/xevf
#   make deps            install the Debian packages the build and tests need
#
# Layout (docs/architecture.md): one static library per folder. Each folder is
# compiled with its own and the lower folders' include paths only, so an
# upward or sideways #include does not build; tests/check-layering.sh refuses
# relative includes that would get around it.

BUILD     ?= build
SAN       ?=
CC        ?= cc
PREFIX    ?= /usr/local
PKGS      := $(shell awk '!/^\#/ && NF {print $$1}' packages.list)
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
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
XCFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -DXEVF_VERSION=\"$(VERSION)\" $(PKG_CFLAGS)
LIBS      := $(shell pkg-config --libs $(PKGS)) -lpthread

# ---- generated protobuf code ------------------------------------------------
GEN_DIR   := $(BUILD)/gen
PROTOS    := proto/deviceplugin/v1beta1/api.proto proto/podresources/v1/api.proto proto/xevf/migration/v1/migration.proto \
             proto/kubevirt/hooks/plugins/v1alpha1/api.proto
PROTO_C   := $(patsubst proto/%.proto,$(GEN_DIR)/%.pb-c.c,$(PROTOS))
PROTO_H   := $(PROTO_C:.c=.h)

# protoc-c's own RPC stubs are not used (gRPC C core is the transport). The
# kubelet's api.protos (device plugin, PodResources) lose their service blocks: protoc-c would name the stub
# for Registration.Register `register`, a C keyword. migration.proto keeps its
# service: the Migration service's method table is checked against protoc-c's
# service descriptor. The messages, and so the wire format, are the same.
# (GNU make takes the rule with the shorter stem, so xevf/ takes its own.)
$(GEN_DIR)/%.pb-c.c $(GEN_DIR)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN_DIR) $(dir $(BUILD)/proto-msgs/$*)
	awk '/^service /{skip=1} skip && /^}/{skip=0; next} !skip' $< > $(BUILD)/proto-msgs/$*.proto
	protoc-c --proto_path=$(BUILD)/proto-msgs --c_out=$(GEN_DIR) $(BUILD)/proto-msgs/$*.proto

$(GEN_DIR)/xevf/%.pb-c.c $(GEN_DIR)/xevf/%.pb-c.h: proto/xevf/%.proto
	@mkdir -p $(GEN_DIR)
	protoc-c --proto_path=proto --c_out=$(GEN_DIR) $<

# ---- one library per folder, and what each may include ----------------------
LAYERS          := driver util ops rpc config inventory deviceplugin migration nodehooks daemon cli
dir_driver       := driver
dir_util         := agent/util
dir_ops          := agent/ops
dir_rpc          := agent/rpc
dir_config       := agent/config
dir_inventory    := agent/inventory
dir_deviceplugin := agent/deviceplugin
dir_migration    := agent/migration
dir_nodehooks    := agent/nodehooks
dir_daemon       := agent/daemon
dir_cli          := agent/cli
inc_driver       := driver
inc_util         := agent/util $(inc_driver)
inc_ops          := agent/ops $(inc_util)
inc_rpc          := agent/rpc $(inc_ops) $(GEN_DIR)
inc_config       := agent/config $(inc_ops)
inc_inventory    := agent/inventory $(inc_util)
inc_deviceplugin := agent/deviceplugin agent/inventory agent/config $(inc_rpc)
inc_migration    := agent/migration agent/inventory agent/config $(inc_rpc)
inc_nodehooks    := agent/nodehooks $(inc_rpc)
inc_daemon       := agent/daemon agent/deviceplugin agent/migration agent/nodehooks agent/inventory agent/config $(inc_rpc)
inc_cli          := agent/cli $(inc_daemon)
ALL_INC          := $(addprefix -I,$(sort $(foreach l,$(LAYERS),$(inc_$(l)))))

# the link order: each library before the ones it uses
LINK_ORDER := cli daemon nodehooks deviceplugin migration inventory config rpc ops util proto driver
LIB = $(BUILD)/libxevf-$(1).a

define layer
src_$(1) := $$(filter-out agent/cli/main.c,$$(wildcard $$(dir_$(1))/*.c))
obj_$(1) := $$(patsubst %.c,$(BUILD)/obj/%.o,$$(src_$(1)))
$$(obj_$(1)): LAYER_INC := $$(addprefix -I,$$(inc_$(1)))
$$(call LIB,$(1)): $$(obj_$(1))
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer,$(l))))

$(BUILD)/obj/%.o: %.c $(BUILD)/layering.ok | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC $<"; $(CC) $(CFLAGS) $(XCFLAGS) $(LAYER_INC) -c $< -o $@

PROTO_OBJ := $(patsubst $(GEN_DIR)/%.c,$(BUILD)/obj/gen/%.o,$(PROTO_C))
$(BUILD)/obj/gen/%.o: $(GEN_DIR)/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -I$(GEN_DIR) $(shell pkg-config --cflags libprotobuf-c) -c $< -o $@
$(call LIB,proto): $(PROTO_OBJ)
	@rm -f $@
	ar rcs $@ $^

ALL_LIBS := $(foreach l,$(LINK_ORDER),$(call LIB,$(l)))

# No relative includes: a folder sees only what its include path gives it.
$(BUILD)/layering.ok: tests/check-layering.sh $(wildcard driver/*.[ch] agent/*/*.[ch])
	@mkdir -p $(BUILD)
	@tests/check-layering.sh
	@touch $@

.PHONY: all agent unit-tests fuzzers test-vm test test-unit test-integration test-asan test-valgrind test-fuzz test-helm \
        manifests lint demo deps clean install bench
all: agent
agent: $(BUILD)/xevf-agent $(BUILD)/xevf-agent-sim

$(BUILD)/obj/agent/cli/main.o: LAYER_INC := $(addprefix -I,$(inc_cli))
$(BUILD)/xevf-agent: $(BUILD)/obj/agent/cli/main.o $(ALL_LIBS)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

# ---- test doubles and test builds -------------------------------------------
# The simulated VFIO device and its provider live in tests/doubles and reach
# only test builds: xevf-agent-sim (the agent with --vfio-sim) and unit tests.
DOUBLES_SRC := $(wildcard tests/doubles/*.c)
DOUBLES_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tests/doubles/sim_main.c,$(DOUBLES_SRC)))
$(patsubst %.c,$(BUILD)/obj/%.o,$(DOUBLES_SRC)): LAYER_INC := -Itests/doubles $(ALL_INC)
$(BUILD)/xevf-agent-sim: $(BUILD)/obj/tests/doubles/sim_main.o $(DOUBLES_OBJ) $(ALL_LIBS)
	$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
TEST_INC   := -Itests/unit -Itests/doubles $(ALL_INC)
$(BUILD)/tests/%: tests/unit/%.c tests/unit/testutil.h $(DOUBLES_OBJ) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(TEST_INC) -Wno-missing-prototypes -DSIMHOST=\"$(CURDIR)/tests/sim/simhost.py\" \
	  $< $(DOUBLES_OBJ) $(ALL_LIBS) $(LDFLAGS) $(LIBS) -lcmocka -o $@

unit-tests: $(UNIT_BIN)

FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(TEST_INC) -fsanitize=fuzzer $< $(ALL_LIBS) $(LDFLAGS) $(LIBS) -o $@
fuzzers: $(FUZZ_BIN)

# The kubelet's minimal counterpart that runs inside the real-kernel VM.
$(BUILD)/vm/kubelet_min: tests/vm/kubelet_min.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(TEST_INC) -Wno-missing-prototypes $< $(ALL_LIBS) $(LDFLAGS) $(LIBS) -o $@

# The migration engine's checks against real mtty devices, inside the VM.
$(BUILD)/vm/mig_engine_check: tests/vm/mig_engine_check.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(TEST_INC) -Wno-missing-prototypes $< $(ALL_LIBS) $(LDFLAGS) $(LIBS) -o $@

# The compiled half of `make bench` (a kubelet, an Allocate client, a ListAndWatch
# watcher, a bare gRPC server), so that the measuring side costs little.
$(BUILD)/bench/xevf-bench: tests/bench/xevf_bench.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(TEST_INC) -Wno-missing-prototypes $< $(ALL_LIBS) $(LDFLAGS) $(LIBS) -o $@

-include $(shell find $(BUILD)/obj $(BUILD)/tests $(BUILD)/fuzz $(BUILD)/vm $(BUILD)/bench -name '*.d' 2>/dev/null)

test-vm: agent $(BUILD)/vm/kubelet_min $(BUILD)/vm/mig_engine_check
	tests/vm/run.sh $(BUILD)
	tests/vm/mtty.sh $(BUILD)
	tests/vm/qemu.sh $(BUILD)

# ---- tests -------------------------------------------------------------------
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
	/usr/bin/python3 tests/demo.py $(BUILD)/xevf-agent-sim

# Speed and memory against the targets of docs/performance.md, with the
# references measured in the same run; BENCH_QUICK=1: a short smoke run.
bench: agent $(BUILD)/bench/xevf-bench
	/usr/bin/python3 tests/bench/bench.py $(BUILD) $(if $(BENCH_QUICK),--quick)

deps:
	tests/install-deps.sh

install: $(BUILD)/xevf-agent
	install -D -m 0755 $(BUILD)/xevf-agent $(DESTDIR)$(PREFIX)/bin/xevf-agent

clean:
	rm -rf build
