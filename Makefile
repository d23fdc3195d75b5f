# make pipeline      set up .venv and run the whole pipeline (dvc repro): the CPU profile; exit 1 if a proof failed
# make test          set up .venv, install what some tests need beyond Python (.ci/tools), lint, run the suite (CI runs it)
# make lint          ruff: lint and format check (`make format` rewrites)
# make setup         only create/refresh .venv from the pinned requirements
# make pipeline-gpu  on a GPU host with TensorRT 10: the CPU profile plus TensorRT engines (gpu/dvc.yaml)
# make lock-check    does dvc.lock record this commit's code and params? (seconds; `make ci` and the pre-commit hook)
# make ci            the CPU CI job as the workflows run it: the lock check, pull (or reproduce) the pipeline, the gate
# make ci-gpu        the GPU CI job: the GPU profile, then the gate over both profiles' figures
# make push          dvc push to the configured DVC remote (CI does it after a green run on main)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

.PHONY: setup tools lint format docs pipeline pipeline-gpu test lock-check ci ci-gpu reproduce push clean

setup: $(STAMP)

$(STAMP): requirements-torch.txt requirements.txt requirements-corpus.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps kserve==0.21.0 onnxscript==0.7.2 onnx_ir==1.1.0 onnxconverter-common==1.16.0
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-corpus.txt   # the corpus test's builders
	$(BIN)/python -m evaluate.install_perf_analyzer >/dev/null || echo "warning: no perf_analyzer (the benchmark skips its cross-check)"
	@touch $(STAMP)

# dvc repro records a failed proof (so that dvc.lock records what the code proved); the gate with nothing to compare
# with then fails on it (exit 1), and prints each model's verdict
VERDICT = PATH="$(BIN):$$PATH" python -m evaluate.gate baseline=none output=reports/gate/pipeline.md
pipeline: setup
	PATH="$(BIN):$$PATH" dvc repro
	@$(VERDICT)

pipeline-gpu: setup
	@$(BIN)/python -m export.gpu_host
	PATH="$(BIN):$$PATH" dvc repro gpu/dvc.yaml
	@$(VERDICT)

# what some tests need beyond Python (nginx with njs, actionlint): installed where possible, else reported
tools:
	@.ci/tools

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# the tables in docs/ from the committed reports (after a `dvc repro` or `python -m evaluate.hardening` changed them)
docs: setup
	$(BIN)/python -m evaluate.doc_figures

test: setup tools lint
	PATH="$(BIN):$$PATH" python -m pytest

# From a DVC remote when one is configured (only what changed is then recomputed), else from scratch.
DVC = PATH="$(BIN):$$PATH" dvc
REPRODUCE = if [ -n "$$($(DVC) remote list)" ]; then $(DVC) pull --allow-missing; fi; $(DVC) repro
reproduce: setup
	$(REPRODUCE)

# The gate runs even when the pipeline failed (an export or a server that fails stops `dvc repro`; a failed proof is
# recorded and judged here): its table says which model and which figure; the job fails if either did.
GATE_ARGS ?=
GATE = PATH="$(BIN):$$PATH" python -m evaluate.gate dvc_diffs=true $(GATE_ARGS)
# First, in seconds: the committed dvc.lock must record this commit's code and params (else its reports are not this
# commit's proof). The GPU job checks the CPU profile's lock too: gpu/dvc.lock is made by the job, on its GPU.
LOCK_CHECK = $(BIN)/python -m evaluate.lock_check
lock-check:   # also the pre-commit hook (.pre-commit-config.yaml); no setup: it must take seconds
	@test -x $(BIN)/python || { echo "error: no $(VENV): run \`make setup\` first" >&2; exit 2; }
	@$(LOCK_CHECK)

ci: setup
	@$(LOCK_CHECK)
	status=0; ($(REPRODUCE)) || status=$$?; $(GATE) || status=$$?; exit $$status

ci-gpu: setup
	@$(BIN)/python -m export.gpu_host
	@$(LOCK_CHECK)
	status=0; $(DVC) repro gpu/dvc.yaml || status=$$?; $(GATE) || status=$$?; exit $$status

# After a green run on main: share what was built, so CI and colleagues pull instead of retraining.
push: setup
	@if [ -n "$$($(DVC) remote list)" ]; then $(DVC) push; \
	else echo "no DVC remote configured: nothing to push (docs/ci-gate.md: Shared cache)"; fi

clean:   # outputs that are not committed (reports/ is, with the code)
	rm -rf data models model_repository model_repository_gpu logs reports/parity_adhoc reports/gate
