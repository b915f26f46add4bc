# xdpctl build. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLANG ?= clang
ARCH_INC := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Werror -Wno-unused-function \
	-I bpf/include -I $(ARCH_INC)
BPF_OUT := xdpctl/bpf
BPF_HDRS := $(wildcard bpf/include/*.h)
NATIVE_CFLAGS := -O2 -fPIC -shared -Wall -Wextra -Werror
NATIVE_SO := xdpctl/native/libxcnative.so.1
XDP_SRCS := $(wildcard bpf/xdp/*.bpf.c)
TC_SRCS := $(wildcard bpf/tc/*.bpf.c)
BPF_OBJS := $(patsubst bpf/xdp/%.bpf.c,$(BPF_OUT)/xdp_%.o,$(XDP_SRCS)) \
	$(patsubst bpf/tc/%.bpf.c,$(BPF_OUT)/tc_%.o,$(TC_SRCS))
APT_PKGS := clang llvm libbpf-dev libbpf1 bpftool iproute2 ethtool nftables \
	xdp-tools python3-venv python3-dev gcc systemd \
	etcd-server openssl tcpdump \
	chromium chromium-driver
SWAGGER_UI := api/static/vendor/swagger-ui/swagger-ui-bundle.js
STAMP_APT := .deps-apt.stamp
STAMP_VENV := $(VENV)/.installed.stamp

.PHONY: all deps bpf native wheel test test-unit demo bench clean distclean

all: bpf native

$(STAMP_APT):
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@touch $@

$(STAMP_VENV): pyproject.toml setup.py | $(STAMP_APT)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[test]'
	@touch $@

# Swagger UI for the offline /docs page: fetched (pinned, sha256-checked),
# not kept in git.
$(SWAGGER_UI): tools/fetch_swagger_ui.py
	$(PYTHON) tools/fetch_swagger_ui.py

deps: $(STAMP_APT) $(STAMP_VENV) $(SWAGGER_UI)

$(BPF_OUT)/xdp_%.o: bpf/xdp/%.bpf.c $(BPF_HDRS) | $(STAMP_APT)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_OUT)/tc_%.o: bpf/tc/%.bpf.c $(BPF_HDRS) | $(STAMP_APT)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

bpf: $(BPF_OBJS)

# Userspace helpers in C (xdpctl/native): the list parsers and 64-bit word helpers.
$(NATIVE_SO): native/prefixes.c native/words.c | $(STAMP_APT)
	$(CC) $(NATIVE_CFLAGS) $^ -o $@

native: $(NATIVE_SO)

# A wheel needs the objects (setup.py refuses to build one without them).
wheel: deps bpf native
	$(PY) -m pip wheel -qq --no-deps -w dist .
	rm -rf build *.egg-info

# The suite in TEST_JOBS pytest-xdist workers (one per CPU of a 2-core
# machine): its tests make their own namespaces, pin and state directories
# and ports, so they run side by side. TEST_JOBS=0 runs them in one process.
TEST_JOBS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal

test: deps bpf native
	$(PYTEST) --durations=20 tests

test-unit: deps
	$(PYTEST) tests/unit

demo: deps bpf native
	$(PY) -m xdpctl.demo

# xdpctl's own modules compiled first, as a wheel's install does: the
# editable tree's are not, and with PYTHONDONTWRITEBYTECODE set every CLI
# run would compile them again.
bench: deps bpf native
	$(PY) -m compileall -q xdpctl api >/dev/null
	$(PY) -m bench.run

clean:
	rm -rf $(BPF_OUT)/*.o $(NATIVE_SO) build dist *.egg-info .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(STAMP_APT)
