"""Every benchmark still runs: at a handful of samples each, against the tests' Postgres.

Nothing here reads a number (speed is measured on demand, never in a test). The benchmarks are
run by hand and nothing else calls them, so a change to what they drive broke one unnoticed:
``bench claim`` had passed 14 parameters to a statement that had grown a 15th. This keeps them
runnable, on the local server and on the embedded one alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import available
from bench.pipeline_procs import database_url
from tests.conftest import PgServer

ROOT = Path(__file__).resolve().parents[2]

# the smallest run that still takes every path of each benchmark
SMALL = {
    "claim": {"BENCH_N": "3", "BENCH_CLAIM_INTENTS": "0,3"},
    "pipeline": {
        "BENCH_N": "10",
        "BENCH_HISTORY": "20",
        "BENCH_GROUPS": "g1,g10",
        "BENCH_TP_GROUPS": "2",
    },
    "tradovate": {"BENCH_N": "20"},
    "paper": {"BENCH_PAPER_N": "100", "BENCH_PAPER_ROUNDS": "5"},
}
# a line each one prints only once it has measured everything
LAST_WORDS = {
    "claim": "Execution Time:",
    "pipeline": "alerts/s, 10 sub-acct each",
    "tradovate": "pipelined orders/s",
    "paper": "finished orders",
}


def test_every_benchmark_has_a_smoke_run() -> None:
    assert sorted(SMALL) == available()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_benchmark_runs(name: str, pg_server: PgServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "JTRADES_"))}
    env |= SMALL[name] | {"JTRADES_BENCH_DSN": pg_server.dsn("postgres")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert LAST_WORDS[name] in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize(
    ("dsn", "want"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/x"),
        ("postgresql://postgres@/postgres?host=/tmp/pg", "postgresql://postgres@/x?host=/tmp/pg"),
    ],
)
def test_database_url_keeps_the_socket(dsn: str, want: str) -> None:
    assert database_url(dsn, "x") == want
