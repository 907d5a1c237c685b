"""Run a recipe: evaluate the starting model, SFT on demonstrations, RL, evaluate again, report.

Stages write into the recipe's output folder: ``metrics.jsonl`` (+ ``tensorboard/``), ``checkpoints/``
(``sft`` after SFT, ``rl`` every few iterations), ``eval/<label>.jsonl`` trajectories, ``results.json``,
``report.html`` + ``curves.png`` and ``final/`` (the trained model, loadable by ``agentenv eval --policy
model:<dir>/final``). ``resume=True`` continues from the newest complete checkpoint whatever a kill left
(:mod:`agentenv.policies.checkpoint`); RL resumes exactly (same next update), ``metrics.jsonl`` is cut back to what
the checkpoints hold (no step twice, none missing), finished evaluations are kept and the final one runs again.
A non-finite loss or weight stops training (:class:`~agentenv.policies.rl.DivergedError`) before anything is saved.

Launched as several processes (``accelerate launch --num_processes N``, or ``torchrun``), RL is data-parallel
through an ``accelerate.Accelerator`` (:class:`~agentenv.policies.rl.RLTrainer`), evaluations play a share of the
test tasks on each process, and only the main process writes; SFT runs whole on every process (DDP starts RL
from the main process's weights).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_choice
from agentenv.recipes.config import Recipe
from agentenv.recipes.report import RunLog, write_report


def _progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if console is None:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)  # fmt: skip


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


@contextmanager
def _bar(progress: Any, description: str, total: int) -> Iterator[Callable[..., None]]:
    """A progress bar for the duration of the block (none without ``progress``); yields ``advance(amount=1)``, which
    moves it by ``amount`` when that is a number (a share of an episode) and by one otherwise (a finished episode, as
    ``on_episode`` callbacks pass it). ``advance.note(text)`` shows ``text`` after the description ("" removes it)."""
    if progress is None:
        quiet: Any = lambda *_: None  # noqa: E731
        quiet.note = quiet
        yield quiet
        return
    task = progress.add_task(description, total=total)

    def advance(amount: Any = 1) -> None:
        progress.advance(task, amount if isinstance(amount, (int, float)) else 1)

    def note(text: str) -> None:
        progress.update(task, description=f"{description} ({text})" if text else description)

    advance.note = note  # type: ignore[attr-defined]
    try:
        yield advance
    finally:
        progress.remove_task(task)


def launched_accelerator(recipe: Recipe) -> Any:
    """An ``accelerate.Accelerator`` when this is one of several launched processes (``WORLD_SIZE`` > 1) or
    ``accelerate launch`` was asked for FSDP, else None.

    It runs on the CPU (gloo) when there is no GPU or ``model.device`` is ``cpu``. The environment is read rather
    than ``accelerate.PartialState()``, which, made first without ``cpu=True``, counts 1 process on a CPU-only host.
    """
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not fsdp:
        return None
    import torch
    from accelerate import Accelerator

    device = recipe.model.device
    return Accelerator(cpu=not torch.cuda.is_available() or (device is not None and device.startswith("cpu")))


def load_policy_model(
    recipe: Recipe,
    device: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    num_threads: int | None = None,
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, chat_format)`` as the recipe's model section asks (LoRA adapters when configured), on
    ``device`` if given, else ``model.device``, with ``num_threads`` torch threads if given, else
    ``model.num_threads``. The chat format shows the env's tools, if it has any."""
    from agentenv.models import enable_gradient_checkpointing, load_model
    from agentenv.policies.tools import tool_chat_format

    if tools is None:
        tools = env_tools(recipe)  # a bad env kwarg fails here, before the model loads
    m = recipe.model
    threads = num_threads if num_threads is not None else m.num_threads
    model, tokenizer = load_model(m.name, num_threads=threads, dtype=m.dtype, device=device or m.device)
    if m.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if m.lora is not None:
        try:
            import peft
        except ImportError as e:
            raise ConfigError("model.lora needs the peft package: pip install 'agentenv[train]'") from e
        config = peft.LoraConfig(
            r=m.lora.r, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout, target_modules=m.lora.target_modules,
            task_type="CAUSAL_LM",
        )  # fmt: skip
        model = peft.get_peft_model(model, config)
    return model, tokenizer, tool_chat_format(tokenizer, tools, chat_template=m.chat_template)


def env_tools(recipe: Recipe) -> list[dict[str, Any]]:
    """The tool schemas of the recipe's env, read from an env made with its kwargs (the env checks their values).
    A self-play recipe's game has none (it is made all the same, to check its kwargs)."""
    import agentenv

    if recipe.selfplay is not None:
        from agentenv.recipes.selfplay import make_games

        try:
            make_games(recipe, 1)[0].close()
        except ConfigError as e:
            raise ConfigError(f"env.kwargs={recipe.env.kwargs!r} for {recipe.env.id}: {e}") from e
        return []
    try:
        probe = agentenv.make(recipe.env.id, **recipe.env.kwargs)
    except ConfigError as e:
        raise ConfigError(f"env.kwargs={recipe.env.kwargs!r} for {recipe.env.id}: {e}") from e
    try:
        return list(probe.unwrapped.tools)
    finally:
        probe.close()


def eval_labels(recipe: Recipe, stage: str) -> dict[str, str]:
    """The evaluations of a stage (``before``, ``after SFT``, ``after``): label -> env id."""
    return {stage: recipe.env.id, **{f"{stage} {h.split('/')[-1]}": h for h in recipe.eval.harder}}


def evaluate(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    chat_format: Any,
    env_id: str,
    label: str,
    progress: Any = None,
    accelerator: Any = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Greedy (by default) episodes on the first ``eval.episodes`` test tasks of ``env_id``: summary, trajectories.

    With an ``accelerator`` every process plays a contiguous share of the tasks and returns all of them, in order.
    """
    import agentenv
    from agentenv.policies.local import Sampling, TransformersPolicy
    from agentenv.rollout import EpisodeProgress, rollout, summarize

    e = recipe.eval
    seeds = range(e.episodes)
    processes = accelerator.num_processes if accelerator is not None else 1
    if processes > 1:
        rank = accelerator.process_index
        seeds = seeds[rank * e.episodes // processes : (rank + 1) * e.episodes // processes]
    kwargs = {**recipe.env.kwargs, "split": "test"} if env_id == recipe.env.id else {"split": "test"}
    envs = [agentenv.make(env_id, **kwargs) for _ in range(max(1, min(e.num_envs, len(seeds))))]
    sampling = Sampling(e.max_new_tokens, e.temperature, seed=recipe.seed)
    policy = TransformersPolicy(model, tokenizer, sampling, batch_size=len(envs))
    model.eval()
    try:
        with _bar(progress, f"eval {label}", len(seeds)) as advance:
            bar = EpisodeProgress(advance, envs[0].unwrapped.max_turns, advance.note)  # moves turn by turn
            trajectories = rollout(
                envs, policy, chat_format, seeds, env_id=env_id, policy_name=label,
                max_context_tokens=recipe.rl.max_context_tokens if recipe.rl else 4096, on_episode=bar.episode,
                on_turn=bar.turn, on_tokens=bar.tokens,
            )  # fmt: skip
    finally:
        for env in envs:
            env.close()
    if processes > 1:
        from accelerate.utils import gather_object

        trajectories = gather_object(trajectories)
    return summarize(trajectories), trajectories


def demonstrations(recipe: Recipe) -> list[list[dict]]:
    """SFT chats: the recipe's JSONL file, or walkthrough episodes on training tasks (successful ones only)."""
    import agentenv
    from agentenv.policies import WalkthroughPolicy
    from agentenv.recipes.config import read_chats
    from agentenv.rollout import play_episode

    s = recipe.sft
    assert s is not None
    if s.data is not None:
        return read_chats(s.data, "sft.data")
    if recipe.selfplay is not None:
        from agentenv.recipes.selfplay import demonstrations as game_demonstrations

        return game_demonstrations(recipe)
    env = agentenv.make(recipe.env.id, **{**recipe.env.kwargs, "split": "train"})
    pool = recipe.rl.train_tasks if recipe.rl is not None else s.episodes
    seeds = random.Random(recipe.seed).sample(range(max(pool, s.episodes)), s.episodes)
    episodes = [play_episode(env, WalkthroughPolicy(), seed) for seed in seeds]
    env.close()
    return [e.messages() for e in episodes if e.success]


Stage = Callable[["RecipeRun"], None]

#: The stages a recipe runs, in order, unless its ``stages`` list says otherwise. Each is a function of the
#: :class:`RecipeRun`; a stage whose section is missing does nothing (no ``sft`` section: no SFT).
DEFAULT_STAGES = ("before", "sft", "rl", "after", "finish")
_STAGES: dict[str, Stage] = {}


def register_stage(name: str) -> Callable[[Stage], Stage]:
    """Decorator: ``fn(run)`` becomes the stage ``name``, which a recipe's ``stages`` list can name (e.g. an extra
    evaluation between SFT and RL). It reads and writes what the run holds: ``run.model``, ``run.results``,
    ``run.log``, ``run.eval_all(label)``..."""
    if not name.isidentifier():
        raise ConfigError(f"stage name {name!r} must be an identifier, like 'probe' or 'eval_harder'")

    def wrap(fn: Stage) -> Stage:
        _STAGES[name] = fn
        return fn

    return wrap


def stage_names() -> tuple[str, ...]:
    return tuple(_STAGES)


def run_recipe(recipe: Recipe, *, resume: bool = False, console: Any = None) -> dict[str, Any]:
    """Run every stage of ``recipe`` (``recipe.stages``, else :data:`DEFAULT_STAGES`); returns ``results.json``'s
    content (evaluations and timings)."""
    if recipe.verdict is not None:  # a judge, not a policy: recipes/verdict.py
        from agentenv.recipes.verdict import run_verdict_recipe

        if resume:
            raise ConfigError("a verdict recipe cannot --resume yet: run it again into a fresh output.dir")
        return run_verdict_recipe(recipe, console=console)
    stages = list(recipe.stages or DEFAULT_STAGES)
    for name in stages:  # before anything is written or loaded
        check_choice("stages", name, _STAGES)
    run = RecipeRun(recipe, resume=resume, console=console)
    with _progress(run.console) as progress:
        run.progress = progress
        for name in stages:
            _STAGES[name](run)
    run.progress = None
    return run.results


class RecipeRun:
    """What the stages of one recipe run share: the output folder and its checkpoints, the results and the log,
    the model (loaded at construction), the RL trainer once there is one, and the process's place in a launch."""

    def __init__(self, recipe: Recipe, *, resume: bool = False, console: Any = None):
        import torch

        from agentenv.models import choose_threads
        from agentenv.policies.checkpoint import is_complete

        self.recipe, self.resume = recipe, resume
        self.tools = env_tools(recipe)  # a bad env kwarg value fails before anything is written or loaded
        self.out = out = recipe.output_dir
        self.accelerator = launched_accelerator(recipe)
        self.main = self.accelerator is None or self.accelerator.is_main_process
        self.console = console if self.main else None
        if out.exists() and not resume and (out / "metrics.jsonl").exists():
            raise ConfigError(f"output folder {str(out)!r} holds a run already: pass --resume, or another output.dir")
        self.results_path = out / "results.json"
        self.results: dict[str, Any] = (json.loads(self.results_path.read_text())
                                        if resume and self.results_path.exists() else {})  # fmt: skip
        self.results.setdefault("evaluations", {})
        self.results.setdefault("seconds", {})
        self.rl_checkpoint, self.sft_checkpoint = out / "checkpoints" / "rl", out / "checkpoints" / "sft"
        self._prepare_folder()
        self.resumed_rl = resume and is_complete(self.rl_checkpoint)
        self.resumed_sft = resume and is_complete(self.sft_checkpoint)
        self.log: Any = RunLog(out, tensorboard=recipe.output.tensorboard) if self.main else _NoLog()
        self.started = time.perf_counter()
        self.progress: Any = None
        self.trainer: Any = None
        torch.manual_seed(recipe.seed)
        t0 = time.perf_counter()
        device = str(self.accelerator.device) if self.accelerator else None
        threads, note = choose_threads(recipe.model.num_threads)  # model.num_threads unset: the free cores
        self.say(note)
        self.model, self.tokenizer, self.chat_format = load_policy_model(recipe, device, self.tools, threads)
        self.results["seconds"]["load model"] = time.perf_counter() - t0
        self.say(f"[bold]{recipe.name}[/]: {recipe.model.name} on {recipe.env.id} -> {out}")
        self.wait_for_everyone()  # before the main process writes a checkpoint the others would see

    def _prepare_folder(self) -> None:
        """The folder written (and, on resume, its checkpoints recovered) by the main process, the others waiting."""
        if self.resume:
            for label in eval_labels(self.recipe, "after"):  # the last evaluation runs again, on the final weights
                self.results["evaluations"].pop(label, None)
        self.wait_for_everyone()  # every process has looked at the folder before the main one writes
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "recipe.json").write_text(json.dumps(self.recipe.to_dict(), indent=1))
            if self.resume:
                rewind(self.out, self.results, self.sft_checkpoint, self.rl_checkpoint)
        self.wait_for_everyone()  # the main process has recovered the checkpoints

    def say(self, text: str) -> None:
        _say(self.console, text)

    def wait_for_everyone(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def save_results(self) -> None:
        if not self.main:
            return
        self.results["recipe"] = self.recipe.name
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        tmp.replace(self.results_path)

    def run_eval(self, label: str, env_id: str) -> dict[str, Any]:
        """One evaluation (greedy by default) on ``env_id``'s test tasks, recorded under ``label``."""
        from agentenv.rollout import write_jsonl

        t0 = time.perf_counter()
        summary, trajectories = evaluate(self.recipe, self.model, self.tokenizer, self.chat_format, env_id, label,
                                         self.progress, self.accelerator)  # fmt: skip
        summary["env_id"] = env_id
        # each test task's outcome, so that two runs evaluated on the same tasks compare paired (agentenv report)
        outcomes = {str(t.seed): bool(t.success) for t in trajectories}
        self.results["evaluations"][label] = {**summary, "outcomes": outcomes}
        self.results["seconds"][f"eval {label}"] = time.perf_counter() - t0
        if self.main:
            write_jsonl(trajectories, self.out / "eval" / f"{label.replace(' ', '_').replace('/', '_')}.jsonl")
        self.log.log("eval", 0, {"label": label, **summary})
        self.say(f"  {label}: success {summary['success_rate']:.1%} "
                 f"[{summary['success_ci_low']:.0%}, {summary['success_ci_high']:.0%}] on "
                 f"{summary['episodes']} test tasks, mean turns {summary['mean_turns']:.1f}, "
                 f"invalid {summary['invalid_rate']:.0%}")  # fmt: skip
        self.save_results()
        return summary

    def eval_all(self, stage: str) -> None:
        """The evaluations of ``stage`` (the recipe's env and its ``eval.harder`` ones; a self-play recipe's game
        against each evaluation opponent) not already finished."""
        if self.recipe.selfplay is not None:
            from agentenv.recipes.selfplay import evaluate_game_stage

            evaluate_game_stage(self, stage)
            return
        for label, env_id in eval_labels(self.recipe, stage).items():
            if label not in self.results["evaluations"]:  # a resumed run keeps the evaluations it finished
                self.run_eval(label, env_id)


@register_stage("before")
def evaluate_before(run: RecipeRun) -> None:
    """The starting model's evaluation (``eval.before``)."""
    if run.recipe.eval.before:
        run.eval_all("before")


@register_stage("sft")
def supervised(run: RecipeRun) -> None:
    """SFT on the demonstrations (unless a resumed run is past it), its checkpoint, the ``after SFT`` evaluation."""
    from agentenv.policies.rl import load_weights, train_sft

    recipe, s = run.recipe, run.recipe.sft
    if s is None:
        return
    if run.resumed_sft or run.resumed_rl:
        if run.resumed_sft and not run.resumed_rl:
            load_weights(run.model, run.sft_checkpoint)
            if recipe.rl is not None and recipe.eval.after_sft:  # those a kill interrupted
                run.eval_all("after SFT")
        return
    t0 = time.perf_counter()
    chats = demonstrations(recipe)
    run.say(f"SFT on {len(chats)} demonstrations, {s.epochs} epochs")
    steps = s.epochs * -(-len(chats) // s.batch_size)
    with _bar(run.progress, "SFT", steps) as advance:

        def on_step(record: dict[str, float]) -> None:
            run.log.log("sft", int(record["step"]), record)
            advance()

        train_sft(run.model, chats, run.chat_format, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                  micro_batch_size=s.micro_batch_size, max_grad_norm=s.max_grad_norm, seed=recipe.seed,
                  on_step=on_step)  # fmt: skip
    run.results["seconds"]["sft"] = time.perf_counter() - t0
    if run.main:
        _save_model(run.model, run.tokenizer, run.sft_checkpoint, {"stage": "sft"})
    if recipe.rl is not None and recipe.eval.after_sft:
        run.eval_all("after SFT")


def _generation_engine(run: RecipeRun) -> Any:
    """The runner that plays the RL rollouts when it is not the trained model itself (``model.engine: vllm``)."""
    m, c = run.recipe.model, run.recipe.rl
    if m.engine != "vllm" or c is None:
        return None
    from agentenv.policies.vllm import VLLMPolicy

    run.say("RL rollouts: a vLLM engine, given the trained weights after each update")
    return VLLMPolicy(m.name, max_model_len=c.max_context_tokens + c.max_new_tokens, seed=run.recipe.seed)


@register_stage("rl")
def reinforce(run: RecipeRun) -> None:
    """RL iterations (resumed from the RL checkpoint when there is one), checkpoints, and co-training's judge."""
    import agentenv
    from agentenv.policies.rl import RLTrainer

    recipe, c = run.recipe, run.recipe.rl
    if c is None:
        return
    if recipe.selfplay is not None:
        from agentenv.recipes.selfplay import trainer as selfplay_trainer

        run.trainer, envs = selfplay_trainer(run)
        cotrainer = None
    else:
        envs = [agentenv.make(recipe.env.id, **{**recipe.env.kwargs, "split": "train"}) for _ in range(c.num_envs)]
        cotrainer = _cotrainer(run, envs)
        if cotrainer is not None:
            envs = [cotrainer.wrap(env) for env in envs]
        run.trainer = RLTrainer(c, run.model, run.tokenizer, envs, run.chat_format, seed=recipe.seed,
                                env_id=recipe.env.id, accelerator=run.accelerator,
                                policy=_generation_engine(run))  # fmt: skip
    trainer = run.trainer
    if run.resumed_rl:
        trainer.load(run.rl_checkpoint)
        run.say(f"resumed RL after iteration {trainer.iteration_done}")
    t0 = time.perf_counter()
    while trainer.iteration_done < c.iterations:
        _rl_iteration(run, cotrainer)
    kept = trainer.keep_best() if hasattr(trainer, "keep_best") else None
    if kept is not None:
        run.results["selection"] = kept
        rates = ", ".join(f"{k['iteration']}: {k['win_rate']:.0%}" for k in kept["candidates"])
        run.say(f"  kept the weights after iteration {kept['kept']} "
                f"of {c.iterations}: win rates against random in {kept['games']} selection games by iteration: "
                f"{rates}")  # fmt: skip
    run.results["seconds"]["rl"] = run.results["seconds"].get("rl", 0) + time.perf_counter() - t0
    if cotrainer is not None and run.main:
        from agentenv.policies.cotrain import plot_monitor

        run.results["cotrain_judge"] = cotrainer.save(run.out / "judge")
        plot_monitor(cotrainer.history, run.out / "cotrain.png")
    for env in envs:
        env.close()


def _cotrainer(run: RecipeRun, envs: list[Any]) -> Any:
    """The judge side of co-training when the recipe has a ``cotrain`` section (policies/cotrain.py)."""
    if run.recipe.cotrain is None:
        return None
    from agentenv.policies.cotrain import CoTrainer

    if run.resume:
        raise ConfigError("a co-training recipe cannot --resume yet (the judge is not checkpointed)")
    cotrainer = CoTrainer(run.recipe.cotrain, num_threads=run.recipe.model.num_threads, seed=run.recipe.seed)
    run.results["cotrain"] = cotrainer.history
    return cotrainer


def _rl_iteration(run: RecipeRun, cotrainer: Any) -> None:
    """One RL iteration with its progress bar, log row and checkpoint; co-training's monitor and judge update."""
    recipe, c, trainer = run.recipe, run.recipe.rl, run.trainer
    it = trainer.iteration_done + 1
    share = c.episodes // (run.accelerator.num_processes if run.accelerator is not None else 1)
    with _bar(run.progress, f"RL {c.algorithm} iteration {it}/{c.iterations}", share) as advance:
        max_turns = getattr(getattr(trainer.envs[0], "unwrapped", None), "max_turns", None)
        if max_turns and recipe.selfplay is None:  # the bar moves turn by turn, not only as episodes end
            from agentenv.rollout import EpisodeProgress

            advance = EpisodeProgress(advance, max_turns, advance.note)
        metrics = trainer.iteration(on_episode=advance)
    run.log.log("rl", it, metrics)
    if recipe.selfplay is not None:
        rates = ", ".join(f"{k[9:]} {v:.0%}" for k, v in metrics.items() if k.startswith("win_rate_"))
        run.say(f"  RL {it}/{c.iterations}: wins in training games: {rates}; return {metrics['mean_return']:.2f}, "
                f"invalid turns {metrics['invalid_rate']:.0%}, {metrics['seconds']:.0f}s")  # fmt: skip
    else:
        run.say(f"  RL {it}/{c.iterations}: success {metrics['success_rate']:.0%} on training tasks, "
                f"return {metrics['mean_return']:.2f}, {metrics['seconds']:.0f}s")  # fmt: skip
    if cotrainer is not None:
        row = cotrainer.after_iteration(it)
        every_eval = recipe.cotrain.eval_every
        if every_eval and it % every_eval == 0 and it < c.iterations:  # 'after' covers the last one
            with trainer.full_parameters():
                row["held_out_success"] = run.run_eval(f"iteration {it}", recipe.env.id)["success_rate"]
        run.log.log("cotrain", it, row)
        pct = {k: "-" if row[k] is None else f"{row[k]:.0%}" for k in ("disagreement", "judge_fpr", "verified_success")}
        run.say(f"    judge: disagreement {pct['disagreement']} with the verifier, FPR {pct['judge_fpr']}, "
                f"verified success {pct['verified_success']}")  # fmt: skip
        run.save_results()
    every = recipe.output.checkpoint_every
    if (every and it % every == 0) or it == c.iterations:
        trainer.save(run.rl_checkpoint)


@register_stage("after")
def evaluate_after(run: RecipeRun) -> None:
    """The trained model's evaluation (always: a resumed run evaluates its final weights again)."""
    with run.trainer.full_parameters() if run.trainer is not None else nullcontext():  # FSDP: whole weights
        run.eval_all("after")
    if run.recipe.selfplay is not None:
        from agentenv.recipes.selfplay import rate_players

        rate_players(run)


@register_stage("finish")
def finish(run: RecipeRun) -> None:
    """``final/`` (the trained model), the timings, ``results.json`` and the report."""
    recipe, trainer = run.recipe, run.trainer
    if recipe.output.save_final:
        weights = trainer.model_state_dict() if trainer is not None and trainer.fsdp else None  # gathered
        if run.main:
            _save_model(run.model, run.tokenizer, run.out / "final", {"stage": "final"}, weights)
    run.results["seconds"]["total (this run)"] = time.perf_counter() - run.started
    run.save_results()
    run.log.close()
    if run.main:
        write_report(run.out, f"{recipe.name}: {recipe.env.id}", run.results["evaluations"], recipe.to_dict())
    run.wait_for_everyone()


def rewind(out: Path, results: dict[str, Any], sft_checkpoint: Path, rl_checkpoint: Path) -> None:
    """Before a resumed run logs again: the newest complete checkpoints recovered from what a kill left, and
    ``metrics.jsonl`` cut back to the steps they hold and the evaluations in ``results``."""
    from agentenv.policies.checkpoint import is_complete, recover
    from agentenv.recipes.report import rewind_metrics

    rl = recover(rl_checkpoint)
    recover(sft_checkpoint)
    rl_done = int(json.loads((rl / "trainer.json").read_text())["iteration_done"]) if rl is not None else 0
    sft_done = rl is not None or is_complete(sft_checkpoint)  # RL starts after SFT's checkpoint
    finished = set(results["evaluations"])

    def keep(record: dict[str, Any]) -> bool:
        stage = record.get("stage")
        if stage == "eval":
            return record.get("label") in finished
        if stage == "sft":
            return sft_done
        if stage == "rl":
            return isinstance(record.get("step"), int) and record["step"] <= rl_done
        return True

    rewind_metrics(out / "metrics.jsonl", keep)


class _NoLog:
    """What a process other than the main one logs to: nothing."""

    def log(self, stage: str, step: int, metrics: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _save_model(model: Any, tokenizer: Any, path: Path, meta: dict[str, Any], state_dict: Any = None) -> None:
    from agentenv.policies.checkpoint import atomic_folder
    from agentenv.policies.rl import write_model

    with atomic_folder(path) as tmp:
        write_model(model, tokenizer, tmp, merge_lora=meta["stage"] == "final", state_dict=state_dict)
        (tmp / "trainer.json").write_text(json.dumps(meta))
