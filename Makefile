# make pipeline      set up .venv and run the whole pipeline (dvc repro): the CPU profile
# make test          set up .venv and run the test suite (what CI runs)
# make setup         only create/refresh .venv from the pinned requirements
# make pipeline-gpu  on a GPU host with TensorRT 10: the CPU profile plus TensorRT engines (gpu/dvc.yaml)
# make ci            the CPU CI job as the workflows run it: pull (or reproduce) the pipeline, then the merge gate
# make ci-gpu        the GPU CI job: the GPU profile, then the gate over both profiles' figures

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

.PHONY: setup pipeline pipeline-gpu test ci ci-gpu reproduce clean

setup: $(STAMP)

$(STAMP): requirements-torch.txt requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-torch.txt
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

pipeline: setup
	PATH="$(BIN):$$PATH" dvc repro

pipeline-gpu: setup
	@$(BIN)/python -m pipelines.trt.host
	PATH="$(BIN):$$PATH" dvc repro gpu/dvc.yaml

test: setup
	PATH="$(BIN):$$PATH" python -m pytest

# From a DVC remote when one is configured (only what changed is then recomputed), else from scratch.
reproduce: setup
	@if [ -n "$$(PATH="$(BIN):$$PATH" dvc remote list)" ]; then \
		PATH="$(BIN):$$PATH" dvc pull --allow-missing; fi
	PATH="$(BIN):$$PATH" dvc repro

GATE_ARGS ?=
ci: reproduce
	PATH="$(BIN):$$PATH" python -m evaluate.gate dvc_diffs=true $(GATE_ARGS)

ci-gpu: pipeline-gpu
	PATH="$(BIN):$$PATH" python -m evaluate.gate dvc_diffs=true $(GATE_ARGS)

clean:   # outputs that are not committed (reports/ is, with the code)
	rm -rf data models model_repository model_repository_gpu logs reports/parity_adhoc reports/gate
