"""Let the book build use the chapter outputs that nbval has just verified, instead of executing them again.

``make test`` executes every chapter exactly once, under nbval, which compares
each cell's fresh output with the committed one. This script then puts each
committed notebook into the book's execution cache (jupyter-cache, the
``execute_notebooks: cache`` mode of ``_config.yml``) together with the time
nbval took to run it, so that ``jupyter-book build`` renders the committed,
just-verified outputs and its execution-statistics page shows nbval's times.

    python scripts/prime_cache.py               # after pytest --nbval has written _build/nbval_times.json

A notebook that nbval did not run, or that failed under nbval, is not put into
the cache (the build would then execute it itself, and the test run has
failed anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "_build" / ".jupyter_cache"
TIMES = ROOT / "_build" / "nbval_times.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=Path, default=TIMES, help="nbval's times (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.times.is_file():
        print(f"prime_cache: {args.times} is missing: run pytest with --nbval -p tests.nbval_timing first")
        return 1
    times = json.loads(args.times.read_text())
    cache = get_cache(str(CACHE))
    primed = 0
    for relative, entry in sorted(times.items()):
        path = ROOT / relative
        if not entry["passed"]:
            print(f"  not cached (failed under nbval): {relative}")
            continue
        notebook = nbformat.read(path, as_version=4)
        bundle = CacheBundleIn(notebook, str(path), data={"execution_seconds": entry["seconds"]})
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
        primed += 1
    print(f"prime_cache: {primed} verified notebook(s) in {CACHE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
