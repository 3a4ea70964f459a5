# Two entry points: `make demo` and `make test`. Both create or refresh .venv
# and install the project with everything it needs before running.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH_PINS)
	$(VENV)/bin/python -m pip install -q -e ".[dev,triton,vision,audio,medical,mmseg]" $(TORCH_PINS)
	# compressai without its dependencies: its numpy<2 pin would downgrade numpy (it works with numpy 2)
	$(VENV)/bin/python -m pip install -q --no-deps compressai==1.2.8
	# compressai imports torch_geometric at package import; the MS-SSIM oracle of the tests is pytorch-msssim
	$(VENV)/bin/python -m pip install -q pytorch-msssim torch-geometric $(TORCH_PINS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ssm-apps demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) runs lightning_logs
