# The commands of the README:
#   make book   create .venv, install everything, build the whole book (executing every chapter)
#   make test   the same set-up plus JupyterLab, then run every test: each chapter is executed once
#               (by nbval, against its committed outputs), and the book is built from those outputs
#   make lab    install JupyterLab with MyST rendering into .venv and open the course in it
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LAB_STAMP = $(VENV)/.lab-installed
PYTEST_ARGS ?= -n 2 --dist loadfile
# two pytest workers on two cores: one thread each, or torch's threads fight over the cores
# (the outputs are the same; the wall time is not)
PYTEST_ENV ?= OMP_NUM_THREADS=1
NBVAL   = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_timing
# tests that look at the built book or at JupyterLab run after the build
AFTER_BUILD = tests/test_rendered_book.py tests/test_lab.py
JB_BUILD = $(BIN)/jupyter-book build . -W -n --keep-going

.PHONY: install install-lab book test pytest notebooks check-book lab clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install-lab: $(LAB_STAMP)

$(LAB_STAMP): $(STAMP) requirements-lab.txt
	$(BIN)/python -m pip install --quiet -r requirements-lab.txt
	@touch $(LAB_STAMP)

book: install
	$(JB_BUILD)
	@echo
	@echo "The book is built. Open this page in a browser:"
	@echo "    $(CURDIR)/_build/html/index.html"

# One execution of each chapter: nbval runs it and compares every output with the committed
# notebook; prime_cache.py hands the verified notebooks to the build, which then executes nothing.
test: install install-lab
	rm -f _build/nbval_times.json
	$(PYTEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) -rs $(NBVAL) --doctest-modules tests flowlib book \
		$(addprefix --ignore=,$(AFTER_BUILD))
	$(BIN)/python scripts/prime_cache.py
	$(JB_BUILD)
	$(BIN)/python -m pytest -rs $(AFTER_BUILD)

# only the pytest part (unit, property, docstring and notebook tests), without the book build
pytest: install
	$(PYTEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) -rs $(NBVAL) --doctest-modules tests flowlib book \
		$(addprefix --ignore=,$(AFTER_BUILD))

# re-execute the chapters from their text sources (book/src/*.md) and write the .ipynb files
notebooks: install
	$(BIN)/python scripts/sync_notebooks.py

check-book: install
	$(BIN)/python scripts/check_book.py

lab: install install-lab
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build
