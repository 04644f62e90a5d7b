# libFuzzer targets: tests/fuzz/fuzz_<parser>.c, each linked with the agent
# built by clang with -fsanitize=fuzzer-no-link,address,undefined.
# `run` fuzzes each target for FUZZ_SECONDS from its seed corpus
# tests/fuzz/corpus/<name>/ (checked in); new findings go to build/fuzz/.
include toolchain/host.mk
FUZZ_SECONDS ?= 10
FB := build/fuzz
FCC := clang
PKGS := libuv libnghttp2 libcjson zlib libzstd libseccomp yaml-0.1 fuse3
FCFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Ulinux -DPB_ENABLE_MALLOC=1 -DPICOCRI_FUZZ=1 \
           -Iagent/core -Iagent -Icri -I$(FB)/gen $(shell pkg-config --cflags $(PKGS)) \
           -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FLIBS := $(shell pkg-config --libs $(PKGS)) -lmbedtls -lmbedx509 -lmbedcrypto \
         /usr/lib/$(TRIPLET)/libprotobuf-nanopb.a -lpthread -lm
SRCS := $(filter-out cri/cri_main.c,$(sort $(wildcard agent/*/*.c) $(wildcard cri/*.c)))
AGENT_PROTOS := $(sort $(wildcard agent/*/*.proto))
GEN_NAMES := api $(basename $(notdir $(AGENT_PROTOS)))
GEN_HDRS := $(patsubst %,$(FB)/gen/%.pb.h,$(GEN_NAMES))
OBJS := $(patsubst %.c,$(FB)/obj/%.o,$(SRCS)) $(patsubst %,$(FB)/obj/gen/%.pb.o,$(GEN_NAMES))
TARGETS := $(patsubst tests/fuzz/%.c,$(FB)/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

all: $(TARGETS)

$(FB)/gen/api.pb.c $(FB)/gen/api.pb.h: cri/api.proto cri/api.options
	@mkdir -p $(FB)/gen
	@cd cri && nanopb_generator.py -q -f api.options -D $(CURDIR)/$(FB)/gen api.proto

define agent_proto_rule
$(FB)/gen/$(basename $(notdir $(1))).pb.c $(FB)/gen/$(basename $(notdir $(1))).pb.h: $(1) cri/api.proto
	@mkdir -p $(FB)/gen
	@cd $(dir $(1)) && nanopb_generator.py -q -I . -I $(CURDIR)/cri -D $(CURDIR)/$(FB)/gen $(notdir $(1))
endef
$(foreach p,$(AGENT_PROTOS),$(eval $(call agent_proto_rule,$(p))))

$(FB)/obj/gen/%.pb.o: $(FB)/gen/%.pb.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	@$(FCC) $(FCFLAGS) -c -o $@ $<

$(FB)/obj/%.o: %.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	@$(FCC) $(FCFLAGS) -c -o $@ $<

$(FB)/libfuzzagent.a: $(OBJS)
	@rm -f $@ && ar rcs $@ $^

$(FB)/fuzz_%: tests/fuzz/fuzz_%.c $(FB)/libfuzzagent.a
	@$(FCC) $(FCFLAGS) -fsanitize=fuzzer -o $@ $< $(FB)/libfuzzagent.a $(FLIBS)

# Each target: the seed corpus is read-only input; new inputs go to a scratch
# directory so the checked-in corpus only changes on purpose.
run: $(TARGETS)
	@pass=0; fail=0; for t in $(TARGETS); do \
	    name=$$(basename $$t); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
	    mkdir -p $(FB)/work/$$name $$corpus; \
	    echo "== $$name ($(FUZZ_SECONDS)s)"; \
	    if $$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -artifact_prefix=$(FB)/work/$$name/ $(FB)/work/$$name $$corpus \
	        >$(FB)/work/$$name.log 2>&1; then pass=$$((pass+1)); \
	    else fail=$$((fail+1)); tail -40 $(FB)/work/$$name.log; fi; \
	done; echo "fuzz: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

.PHONY: all run
