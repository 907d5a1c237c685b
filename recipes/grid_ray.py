"""A grid's runs as tasks on a Ray cluster (``agentenv grid ... --ray ADDRESS``; ``--ray local`` starts one here).

Each run is a task that runs ``python -m agentenv.recipes.grid_exec <task file>`` on whichever node Ray picks, with
``threads`` CPUs (and one GPU each when ``--gpus`` is given; Ray sets the task's ``CUDA_VISIBLE_DEVICES``). The grid's
output folder must be on a file system every node sees: tasks read their recipe from it and write their run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentenv.recipes.grid import Run


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("agentenv grid --ray needs the 'ray' extra: pip install 'agentenv[ray]'") from e
    return ray


def ray_task(task: str, env: dict[str, str], log: str) -> int:
    """The Ray task: the run's recipe in a fresh Python process (so each run's torch threads and memory are its
    own); returns the exit code."""
    with open(log, "a") as out:
        return subprocess.call([sys.executable, "-m", "agentenv.recipes.grid_exec", task], env={**os.environ, **env},
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def run_on_ray(executor: Any, todo: list[Run], waits: dict[Path, set], done: dict[Path, Any]) -> dict[Path, Any]:
    """Submit every run whose shared runs are done, wait for any, repeat (see :class:`~.grid_exec.Executor`)."""
    from agentenv.recipes.grid_exec import LOG_FILE, tail, write_task

    ray = _import_ray()
    ray.init(address=None if executor.ray == "local" else executor.ray, ignore_reinit_error=True,
             log_to_driver=False, include_dashboard=False)  # fmt: skip
    remote = ray.remote(num_cpus=executor.threads or 1, num_gpus=1 if executor.gpus else 0)(ray_task)
    pending, refs = list(todo), {}
    while pending or refs:
        for run in [r for r in pending if not (waits[r.dir] - set(done)) or waits[r.dir] & set(executor.failed)]:
            pending.remove(run)
            missing = [str(d) for d in waits[run.dir] if d in executor.failed]
            if missing:
                executor.failed[run.dir] = f"not started: {', '.join(missing)} failed"
                continue
            resume = (run.dir / "recipe.json").exists()
            task = write_task(run, resume)
            env = {k: v for k, v in executor.child_env(run).items() if k in ("OMP_NUM_THREADS", "AGENTENV_NUM_THREADS")}
            refs[remote.remote(str(task.resolve()), env, str((run.dir / LOG_FILE).resolve()))] = run
            executor.say(f"[bold]grid run[/] {run.label} on Ray -> {run.dir}")
        if not refs:
            raise RuntimeError(f"grid: nothing can start; waiting on {[str(r.dir) for r in pending]}")
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            run = refs.pop(ref)
            try:
                code = ray.get(ref)
            except Exception as e:  # the task itself died (node lost, worker killed)
                executor.failed[run.dir] = f"{type(e).__name__}: {e}"
                continue
            if code != 0:
                executor.failed[run.dir] = f"exit code {code}:\n{tail(run.dir / LOG_FILE)}"
                executor.say(f"[red]failed {run.label}[/]: {executor.failed[run.dir]}")
                continue
            done[run.dir] = json.loads((run.dir / "results.json").read_text())
            executor.say(f"[green]done[/] {run.label}")
    return done
