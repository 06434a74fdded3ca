# Two commands on a fresh machine with only Python >= 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build is pinned so pip never resolves a multi-GB CUDA build by accident. A GPU user
# installs their own torch into $(VENV) first (or passes TORCH_SPEC=...); an importable torch is kept.
TORCH_SPEC ?= torch==2.13.0
SERVE ?= 1
DB ?= results/warpbench.duckdb
BIN := $(VENV)/bin

.PHONY: demo test install clean peers paper

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The optional ANTs and FireANTs peers (plugins `ants`, `fireants`) in a venv of their own,
# $(PEERS_VENV): their pins (antspyx: numpy<2.4, scipy<1.16; fireants: SimpleITK==2.2.1) would
# hold the core's venv back. Torch first and pinned, as for the core.
PEERS_VENV ?= .venv-peers
$(PEERS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -c "import torch" 2>/dev/null || $(PEERS_VENV)/bin/pip install "$(TORCH_SPEC)"
	$(PEERS_VENV)/bin/pip install -e ".[ants,fireants]"
	touch $@

peers: $(PEERS_VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/warpbench run --suite default --db $(DB) || [ $$? -eq 1 ]  # 1: a dataset set aside (no ../shared)
	$(BIN)/warpbench leaderboard --db $(DB)
ifeq ($(SERVE),1)
	$(BIN)/streamlit run leaderboard/app.py -- --db $(DB)
endif

# The `paper` suite takes longer than one sitting on 2 CPU cores, and a fresh machine has no
# results/: its tables are kept in git under $(PAPER_TABLES), merged into the store before the run
# and exported back after it, so each sitting resumes the last. On Ctrl-C the recipe's shell (its
# INT trapped) waits for the run to store what it has, then exports.
PAPER_TABLES ?= benchmarks/measured/paper
PAPER_DB ?= results/paper/wb.duckdb
paper: $(VENV)/.installed
	if [ -d $(PAPER_TABLES) ]; then $(BIN)/warpbench merge $(PAPER_TABLES) -o $(PAPER_DB); fi
	trap true INT; $(BIN)/warpbench run --suite paper --db $(PAPER_DB); status=$$?; \
		$(BIN)/warpbench export --db $(PAPER_DB) --out $(PAPER_TABLES) >/dev/null; exit $$status
	$(BIN)/warpbench study --db $(PAPER_DB)

# The test files spread over the cores (pytest-xdist), a file's tests on one worker so that its
# module fixtures are built once; TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= auto
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) results
