# filmroll — the two commands in the README are `make run` and `make test`; both go through `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup system-deps immich-cli run test test-reliability test-fast lint check-pil clean install install-files

## setup: Debian packages (as root) + the locked Python environment; leaves .venv/bin/filmroll
setup: system-deps $(VENV)/.synced check-pil immich-cli

system-deps:
	@bash scripts/system-deps.sh

# The official Immich CLI and its Node 22, in a cache outside the repo, for tests/e2e/test_immich_cli.py.
immich-cli:
	@bash scripts/immich-cli.sh

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

# pillow-simd and pillow both provide PIL: fail loudly if plain pillow ever replaced it.
check-pil:
	@v=$$($(VENV)/bin/python -c 'import PIL; print(PIL.__version__)'); \
	case "$$v" in *post*) ;; *) echo "PIL $$v is not pillow-simd: plain pillow replaced it" >&2; exit 1;; esac

## run: set up, then start the daemon with the embedded defaults (127.0.0.1:2283)
run: setup
	$(VENV)/bin/filmroll serve

## test: set up, then run the whole suite
test: setup
	$(VENV)/bin/python -m pytest -q

## test-reliability: set up, then run only the slow `reliability` tests (many more examples and files)
test-reliability: setup
	$(VENV)/bin/python -m pytest -q -m reliability

## install: set up, then install the systemd unit, /etc/filmroll/config.toml (kept if present) and
## $(PREFIX)/bin/filmroll (a wrapper around .venv); DESTDIR=/some/root installs under another root
PREFIX ?= /usr/local
DESTDIR ?=
install: setup install-files

install-files: $(VENV)/.synced
	$(VENV)/bin/filmroll install-service --destdir "$(if $(DESTDIR),$(DESTDIR),/)" --prefix "$(PREFIX)"

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache
