# The two commands of the README:
#   make book   create .venv, install everything, build the whole book (executing every chapter)
#   make test   the same set-up, then build the book with warnings as errors and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: install book test pytest notebooks check-book clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

book: install
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo
	@echo "The book is built. Open this page in a browser:"
	@echo "    $(CURDIR)/_build/html/index.html"

test: install
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(MAKE) pytest

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) -rs --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --doctest-modules tests flowlib book

notebooks: install
	$(BIN)/python scripts/sync_notebooks.py

check-book: install
	$(BIN)/python scripts/check_book.py

clean:
	rm -rf _build
