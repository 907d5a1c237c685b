"""Per-command cost of the sandbox backends, measured in the same run against a bare subprocess.

1. Commands: ``true``, ``python -c pass`` and a tiny project's ``python -m pytest -q`` run N times each as a bare
   ``subprocess.run`` (the baseline), through the ``local`` backend (limits, timeout, output capture) and through
   ``bubblewrap`` (fresh namespaces per command). Rounds are interleaved; reports the median ms per command, the
   added ms and the ratio to the baseline.
2. Opening a sandbox on a copy of this repository's ``agentenv/`` folder: copy (+ chown when run as root) per
   ``open_sandbox``, against taking a prepared copy from a ``WorkdirPool``.

Usage: python benchmarks/sandbox_overhead.py [--runs 20]   (writes benchmarks/results/sandbox_overhead.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from agentenv.sandbox import Limits, WorkdirPool, available_backends, open_sandbox

RESULTS = Path(__file__).parent / "results" / "sandbox_overhead.json"
REPO_FOLDER = Path(__file__).resolve().parent.parent / "agentenv"
COMMANDS = {
    "true": ["true"],
    "python -c pass": [sys.executable, "-c", "pass"],
    "pytest (1 test)": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"],
}


def tiny_project() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="agentenv-bench-project-"))
    (folder / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    return folder


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    problems = available_backends()
    if problems["bubblewrap"]:
        raise SystemExit(f"bubblewrap backend unavailable: {problems['bubblewrap']}")
    project = tiny_project()
    limits = Limits(wall_seconds=60)
    env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = open_sandbox(project, backend="local", limits=limits)
    bwrap = open_sandbox(project, limits=limits)
    variants = {
        "subprocess": lambda argv: subprocess.run(argv, cwd=project, env=env, capture_output=True, check=True),
        "local": lambda argv: local.run(argv),
        "bubblewrap": lambda argv: bwrap.run(argv),
    }
    times: dict[str, dict[str, list[float]]] = {c: {v: [] for v in variants} for c in COMMANDS}
    for name, argv in COMMANDS.items():
        for call in variants.values():  # warm-up: page cache, interpreter imports
            call(argv)
        for _ in range(args.runs):
            for variant, call in variants.items():
                times[name][variant].append(timed(lambda: call(argv)))  # noqa: B023
    for variant in ("local", "bubblewrap"):
        result = (local if variant == "local" else bwrap).run(COMMANDS["pytest (1 test)"])
        assert result.ok, result.output
    local.close()
    bwrap.close()

    rows = []
    print(f"\nms per command, median of {args.runs} interleaved runs (ratio and added ms against subprocess.run)")
    print(f"{'command':<18}{'subprocess':>12}{'local':>12}{'bubblewrap':>12}{'bwrap +ms':>11}{'bwrap ratio':>13}")
    for name in COMMANDS:
        median = {v: statistics.median(t) for v, t in times[name].items()}
        base = median["subprocess"]
        row = {"command": name, **{f"{v}_ms": m for v, m in median.items()}}
        row |= {f"{v}_ratio": median[v] / base for v in ("local", "bubblewrap")}
        row |= {f"{v}_added_ms": median[v] - base for v in ("local", "bubblewrap")}
        row |= {f"{v}_p90_ms": sorted(t)[int(0.9 * (len(t) - 1))] for v, t in times[name].items()}
        rows.append(row)
        print(f"{name:<18}{base:>12.1f}{median['local']:>12.1f}{median['bubblewrap']:>12.1f}"
              f"{median['bubblewrap'] - base:>11.1f}{median['bubblewrap'] / base:>13.2f}")  # fmt: skip

    files = sum(len(f) for _, _, f in os.walk(REPO_FOLDER))
    opens = [timed(lambda: open_sandbox(REPO_FOLDER, limits=limits).close()) for _ in range(5)]
    with WorkdirPool(REPO_FOLDER, size=5) as pool:
        time.sleep(3)  # let the pool fill
        taken = [timed(lambda: open_sandbox(pool, limits=limits).close()) for _ in range(5)]
    opening = {"files": files, "copy_open_close_ms": statistics.median(opens)}
    opening["pool_open_close_ms"] = statistics.median(taken)
    copy_ms, pool_ms = opening["copy_open_close_ms"], opening["pool_open_close_ms"]
    print(f"\nopen_sandbox + close on a copy of agentenv/ ({files} files), median of 5: "
          f"copy {copy_ms:.1f} ms, from a WorkdirPool {pool_ms:.1f} ms")  # fmt: skip

    record = {
        "benchmark": "sandbox_overhead",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "bwrap": subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip(),
            "as_root": os.geteuid() == 0,
            "load_average_1min": os.getloadavg()[0],
        },
        "notes": "median ms per command over interleaved runs; ratio/added ms against a bare subprocess.run",
        "runs": args.runs,
        "commands": rows,
        "opening": opening,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
