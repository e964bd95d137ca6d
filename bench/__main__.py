"""Run every ``bench/bench_*.py`` module's ``main()``, or only those named on the command line.

python -m bench              # all of them
python -m bench tradovate    # bench/bench_tradovate.py
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))


def run(names: list[str]) -> int:
    known = available()
    unknown = [n for n in names if n.removeprefix("bench_") not in known]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(known)}", file=sys.stderr
        )
        return 2
    for name in [n.removeprefix("bench_") for n in names] or known:
        print(f"== bench_{name} ==", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
