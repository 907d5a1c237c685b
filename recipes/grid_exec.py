"""Running a grid's plan (:func:`agentenv.recipes.grid.plan_grid`): shared runs first, then the cells; each run in this
process, in ``jobs`` subprocesses (``gpus``: one device each), or as Ray tasks. A finished run is skipped, a
started one resumes from its checkpoints, and a run that fails is reported (its log kept in ``<run>/grid.log``)
while the others go on; cells that needed a failed shared run are not started.

``python -m agentenv.recipes.grid_exec RUN.json`` runs one recipe (the subprocess and Ray workers call it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError
from agentenv.recipes.grid import Plan, Run

TASK_FILE = "grid_task.json"
LOG_FILE = "grid.log"


def comparable(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """What must match for a folder's run to count as the cell's: the recipe less ``eval.before`` (which cell
    evaluates the starting model) and ``model.num_threads`` (set per process when cells run side by side)."""
    data = json.loads(json.dumps(recipe_dict, default=str))
    data.get("eval", {}).pop("before", None)
    data.get("model", {}).pop("num_threads", None)
    return data


def finished(run: Run) -> dict[str, Any] | None:
    """The run's ``results.json`` if it finished, else ``None``; a folder holding another recipe is an error."""
    from agentenv.recipes.run import eval_labels

    saved = run.dir / "recipe.json"
    if saved.exists() and comparable(json.loads(saved.read_text())) != comparable(run.recipe.to_dict()):
        raise ConfigError(f"{str(run.dir)!r} holds a run of a different recipe: change output (or remove that folder)")
    path = run.dir / "results.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    done = "total (this run)" in results.get("seconds", {})
    labels = eval_labels(run.recipe, "after")
    return results if done and all(label in results.get("evaluations", {}) for label in labels) else None


class Executor:
    """Runs a plan's runs; ``jobs`` > 1, ``gpus`` or ``ray`` run each in its own process."""

    def __init__(self, *, jobs: int = 1, gpus: list[str] | None = None, ray: str | None = None,
                 threads: int | None = None, console: Any = None):  # fmt: skip
        if jobs < 1:
            raise ConfigError(f"jobs={jobs} must be at least 1")
        self.gpus = list(gpus or [])
        self.jobs = len(self.gpus) if self.gpus and jobs == 1 else jobs
        self.ray, self.console = ray, console
        self.threads = threads or (max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else None)
        self.failed: dict[Path, str] = {}
        self._free_gpus = list(self.gpus)
        self._lock = threading.Lock()

    @property
    def in_process(self) -> bool:
        return self.jobs == 1 and not self.gpus and self.ray is None

    def say(self, text: str) -> None:
        if self.console is not None:
            with self._lock:
                self.console.print(text)

    def run_plan(self, plan: Plan) -> dict[Path, dict[str, Any]]:
        """Run (or skip) every run of ``plan``; returns folder -> results for the runs that finished."""
        done: dict[Path, dict[str, Any]] = {}
        for run in plan.runs:  # a folder of another recipe fails before anything runs
            results = finished(run)
            if results is not None:
                done[run.dir] = results
                self.say(f"[dim]skip {run.label} (finished in {run.dir})[/]")
        todo = [r for r in plan.runs if r.dir not in done]
        waits = {r.dir: {plan.sft_from.get(r.dir), plan.before_from.get(r.dir)} - {None, r.dir} for r in todo}
        if self.ray is not None:
            from agentenv.recipes.grid_ray import run_on_ray

            return run_on_ray(self, todo, waits, done)
        if self.in_process:
            for run in todo:
                self._one(run, waits[run.dir], done, self._run_here)
            return done
        return self._pool(todo, waits, done)

    def _pool(self, todo: list[Run], waits: dict[Path, set], done: dict[Path, dict[str, Any]]) -> dict[Path, Any]:
        pending, futures = list(todo), {}
        with ThreadPoolExecutor(self.jobs) as pool:
            while pending or futures:
                ready = [r for r in pending if not (waits[r.dir] - set(done)) or waits[r.dir] & set(self.failed)]
                for run in ready[: self.jobs - len(futures)]:
                    pending.remove(run)
                    futures[pool.submit(self._one, run, waits[run.dir], done, self._run_subprocess)] = run
                if not futures:
                    raise RuntimeError(f"grid: nothing can start; waiting on {[str(r.dir) for r in pending]}")
                finished_now, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in finished_now:
                    futures.pop(future)
                    future.result()
        return done

    def _one(self, run: Run, needs: set, done: dict[Path, Any], how: Any) -> None:
        missing = [str(d) for d in needs if d in self.failed]
        if missing:
            self.failed[run.dir] = f"not started: {', '.join(missing)} failed"
            self.say(f"[red]skip {run.label}[/]: {self.failed[run.dir]}")
            return
        resume = (run.dir / "recipe.json").exists()
        self.say(f"[bold]grid run[/] {run.label}{' (resumed)' if resume else ''} -> {run.dir}")
        started = time.perf_counter()
        try:
            how(run, resume)
            results = json.loads((run.dir / "results.json").read_text())
        except Exception as e:  # one run's failure loses no other run
            self.failed[run.dir] = f"{type(e).__name__}: {e}"
            self.say(f"[red]failed {run.label}[/]: {self.failed[run.dir]}")
            return
        done[run.dir] = results
        self.say(f"[green]done[/] {run.label} in {time.perf_counter() - started:.0f}s")

    def _run_here(self, run: Run, resume: bool) -> None:
        from agentenv.recipes.run import run_recipe

        if run.recipe.model.num_threads is None and self.threads:  # --threads with cells run one at a time
            run.recipe.model.num_threads = self.threads
        run_recipe(run.recipe, resume=resume, console=self.console)

    def _run_subprocess(self, run: Run, resume: bool) -> None:
        task = write_task(run, resume)
        env = self.child_env(run)
        with self._lock:
            gpu = self._free_gpus.pop(0) if self._free_gpus else None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        try:
            with (run.dir / LOG_FILE).open("a") as log:
                code = subprocess.call([sys.executable, "-m", "agentenv.recipes.grid_exec", str(task)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        finally:
            if gpu is not None:
                with self._lock:
                    self._free_gpus.append(gpu)
        if code != 0:
            raise RuntimeError(f"exit code {code}; last lines of {run.dir / LOG_FILE}:\n{tail(run.dir / LOG_FILE)}")

    def child_env(self, run: Run) -> dict[str, str]:
        env = dict(os.environ)
        if run.recipe.model.num_threads is None and self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
            env["AGENTENV_NUM_THREADS"] = str(self.threads)
        return env


def write_task(run: Run, resume: bool) -> Path:
    run.dir.mkdir(parents=True, exist_ok=True)
    path = run.dir / TASK_FILE
    path.write_text(json.dumps({"recipe": run.recipe.to_dict(), "resume": resume}, default=str))
    return path


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_task(path: str | Path) -> None:
    """Run the recipe of a task file written by :func:`write_task` (in a subprocess or a Ray worker)."""
    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import run_recipe
    from agentenv.terminal import console

    task = json.loads(Path(path).read_text())
    recipe = load_recipe(task["recipe"])
    threads = os.environ.get("AGENTENV_NUM_THREADS")
    if threads and recipe.model.num_threads is None:
        recipe.model.num_threads = int(threads)
    run_recipe(recipe, resume=bool(task["resume"]), console=console)


def run_grid(grid: Any, *, jobs: int = 1, gpus: list[str] | None = None, ray: str | None = None,
             threads: int | None = None, console: Any = None) -> dict[str, Any]:  # fmt: skip
    """Run (or skip, when finished) every run of ``grid``, then write and return its summary (``grid.json``; also
    ``grid.csv``, ``grid.md`` and ``grid.png`` in the grid's output folder). Failed cells are listed in it."""
    import dataclasses

    from agentenv.recipes.grid import plan_grid
    from agentenv.recipes.grid_table import cell_record, summarize_grid, write_outputs

    out = grid.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid_config.json").write_text(json.dumps(dataclasses.asdict(grid), indent=1, default=str))
    plan = plan_grid(grid)
    executor = Executor(jobs=jobs, gpus=gpus, ray=ray, threads=threads, console=console)
    already = {r.dir for r in plan.runs if finished(r) is not None}
    done = executor.run_plan(plan)
    records = [cell_record(plan, c, done, executor.failed, already) for c in plan.cells]
    summary = summarize_grid(grid, plan, records)
    write_outputs(summary, out)
    return summary


if __name__ == "__main__":
    run_task(sys.argv[1])
