# make pipeline      set up .venv and run the whole pipeline (dvc repro): the CPU profile
# make test          set up .venv and run the test suite (what CI runs)
# make setup         only create/refresh .venv from the pinned requirements
# make pipeline-gpu  on a GPU host with TensorRT 10: the CPU profile plus TensorRT engines (gpu/dvc.yaml)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed

.PHONY: setup pipeline pipeline-gpu test clean

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

clean:
	rm -rf data models model_repository model_repository_gpu reports logs
