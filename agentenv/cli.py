"""The ``agentenv`` command: list, info, play, check, rollout, eval, train, grid, new, demo, judge-audit, redteam,
clean."""

from __future__ import annotations

import inspect
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from agentenv.redteam import DEFAULT_MARGIN

app = typer.Typer(
    name="agentenv",
    help="Environments, rewards and rollouts for multi-turn LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

KwOption = Annotated[
    list[str] | None,
    typer.Option("--kw", "-k", help="Env keyword argument as key=value (repeatable), e.g. -k size=4 -k reward=dense"),
]


search_app = typer.Typer(
    help="Search envs: build retrieval indexes ahead of training, serve one over HTTP.", no_args_is_help=True
)
CorpusOption = Annotated[str, typer.Option(help="'world' (the envs' default world), 'pydocs', or a corpus JSONL")]
KindOption = Annotated[str, typer.Option(help="bm25 | dense | hybrid")]


@search_app.command("index")
def search_index(
    corpus: CorpusOption = "world",
    kind: KindOption = "bm25",
    cache_dir: Annotated[Path | None, typer.Option(help="index cache (default $AGENTENV_CACHE/search)")] = None,
) -> None:
    """Build the cached index of a corpus (dense embeddings take minutes per 10k passages on a CPU)."""
    from agentenv.envs.search.env import load_corpus
    from agentenv.envs.search.retrieval import build_index

    console.print_json(data=build_index(load_corpus(corpus), kind, cache_dir=cache_dir))


@search_app.command("serve")
def search_serve(
    corpus: CorpusOption = "world",
    kind: KindOption = "bm25",
    host: str = "127.0.0.1",
    port: int = 8000,
    cache_dir: Annotated[Path | None, typer.Option(help="index cache (default $AGENTENV_CACHE/search)")] = None,
) -> None:
    """Serve a retrieval index over HTTP (GET /health, /info, /document/ID; POST /search), for
    `retriever=http://HOST:PORT` in the search envs."""
    from agentenv.envs.search.env import load_corpus
    from agentenv.envs.search.server import serve

    options = {"cache_dir": cache_dir} if cache_dir else {}
    serve(load_corpus(corpus), kind=kind, host=host, port=port, **options)


def _add_family_apps() -> None:
    """Sub-commands of env families: ``agentenv swe ...`` (its module imports only typer) and ``agentenv search``."""
    from agentenv.envs.swe.cli import app as swe_app

    app.add_typer(swe_app, name="swe")
    app.add_typer(search_app, name="search")


_add_family_apps()


def main() -> None:
    from agentenv.errors import ConfigError, EnvContractError, UnknownEnvError

    try:
        app()
    except (ConfigError, UnknownEnvError) as e:
        err.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except EnvContractError as e:
        err.print(f"[bold red]contract violation:[/] {e}")
        sys.exit(1)


def _parse_kwargs(pairs: list[str] | None) -> dict[str, Any]:
    from agentenv.errors import ConfigError

    kwargs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kw {pair!r} must look like key=value")
        kwargs[key.strip()] = yaml.safe_load(value)
    return kwargs


def _knobs(env_id: str) -> dict[str, Any]:
    """Constructor kwargs (with their effective defaults) of a registered env, its spec kwargs applied."""
    import gymnasium as gym

    from agentenv.core import env_kwargs

    spec = gym.spec(env_id)
    creator = _creator(spec)
    params = env_kwargs(creator) if inspect.isclass(creator) else None
    knobs = {n: p.default for n, p in (params or {}).items() if p.default is not inspect.Parameter.empty}
    knobs.update(spec.kwargs)
    return knobs


@app.command("list")
def list_envs(
    family: Annotated[str | None, typer.Option(help="Only this family")] = None,
) -> None:
    """Table of registered environments: id, family, reward modes, knobs."""
    import agentenv
    from agentenv.registry import card, plugin_errors

    table = Table(title="AgentEnv environments")
    for column in ("id", "family", "reward modes", "preset knobs", "description"):
        table.add_column(column, overflow="fold")
    for env_id in agentenv.env_ids():
        c = card(env_id)
        if family and c.family != family:
            continue
        spec = agentenv.spec(env_id)
        creator = _creator(spec)
        modes = ", ".join(getattr(creator, "reward_modes", ()))
        knobs = ", ".join(f"{k}={v}" for k, v in spec.kwargs.items())
        table.add_row(env_id, c.family, modes, knobs, c.description)
    console.print(table)
    for name, why in plugin_errors.items():
        err.print(f"[yellow]plugin {name!r} failed to load:[/] {why}")


def _creator(spec: Any) -> Any:
    import gymnasium as gym

    if isinstance(spec.entry_point, str):
        return gym.envs.registration.load_env_creator(spec.entry_point)
    return spec.entry_point


@app.command()
def info(env_id: str, kw: KwOption = None, seed: int = 0) -> None:
    """Details of one environment: knobs, reward modes, instructions and a first observation."""
    import agentenv
    from agentenv.registry import card

    env_id = agentenv.registry.resolve_id(env_id)
    c = card(env_id)
    env = agentenv.make(env_id, **_parse_kwargs(kw))
    try:
        observation, reset_info = env.reset(seed=seed)
        base = env.unwrapped
        console.print(f"[bold]{env_id}[/]  family={c.family or '-'}  source={c.source or '-'}")
        if c.description:
            console.print(c.description)
        console.print(f"reward modes: {', '.join(base.reward_modes)}   max_turns: {base.max_turns}")
        console.print("knobs: " + ", ".join(f"{k}={v!r}" for k, v in _knobs(env_id).items()))
        console.print(f"\n[bold]instructions[/]\n{_shown(base.instructions)}")
        console.print(
            f"\n[bold]first observation[/] (seed={seed}, task_id={reset_info['task_id']})\n{_shown(observation)}"
        )
        if reset_info.get("optimal_steps") is not None:
            console.print(f"\noptimal_steps: {reset_info['optimal_steps']}")
    finally:
        env.close()


@app.command()
def play(
    env_id: str,
    kw: KwOption = None,
    seed: Annotated[int | None, typer.Option(help="Task seed (random if omitted)")] = None,
) -> None:
    """Play an environment yourself in the terminal. Type :help for commands, :quit to stop."""
    import agentenv

    env = agentenv.make(env_id, **_parse_kwargs(kw))
    try:
        observation, info = env.reset(seed=seed)
        base = env.unwrapped
        console.print(f"[dim]{_shown(base.instructions)}[/]\n")
        console.print(_shown(observation))
        total, done = 0.0, False
        while not done:
            try:
                line = input("> ")
            except EOFError:
                break
            if line.strip() in (":q", ":quit", ":exit"):
                break
            if line.strip() == ":help":
                console.print(":hint (admissible commands), :walkthrough (a solution), :quit")
                continue
            if line.strip() == ":hint":
                console.print(_shown(", ".join(base.admissible_commands() or ["(this env cannot list commands)"])))
                continue
            if line.strip() == ":walkthrough":
                console.print(_shown(" | ".join(base.walkthrough() or ["(no walkthrough)"])))
                continue
            observation, reward, terminated, truncated, info = env.step(line)
            total += reward
            done = terminated or truncated
            flag = " [yellow](invalid)[/]" if info.get("invalid_action") else ""
            console.print(
                f"{_shown(observation)}\n[dim]reward {reward:+.3f}, turn {info['turn']}/{base.max_turns}[/]{flag}"
            )
        verdict = "[green]solved[/]" if info.get("success") else "[red]not solved[/]"
        console.print(f"\nepisode over: {verdict}, return {total:.3f}")
    finally:
        env.close()


def _shown(text: str) -> str:
    """Env text for the console: control characters visible (:func:`~agentenv.core.terminal_text`), no markup."""
    from rich.markup import escape

    from agentenv.core import terminal_text

    return escape(terminal_text(text))


@app.command()
def check(
    env_ids: Annotated[list[str] | None, typer.Argument(help="Env ids; all registered if omitted")] = None,
    kw: KwOption = None,
) -> None:
    """Run Gymnasium's checker and the AgentEnv contract on environments. Exit 1 on any failure."""
    import agentenv
    from agentenv.testing import check_env

    kwargs = _parse_kwargs(kw)
    failures = 0
    for env_id in env_ids or agentenv.env_ids():
        report = check_env(env_id, raise_on_failure=False, **kwargs)
        mark = "[green]PASS[/]" if report.ok else "[red]FAIL[/]"
        console.print(f"{mark} {report.env_id}  ({len(report.passed)} checks passed, {len(report.failed)} failed)")
        for name, why in report.failed.items():
            console.print(f"   [red]✗[/] {name}: {why}")
        for note in report.notes:
            console.print(f"   [dim]· {note}[/]")
        failures += not report.ok
    if failures:
        raise typer.Exit(1)


@app.command()
def prepare(
    env_id: str,
    split: Annotated[str, typer.Option(help="train | validation | test")] = "train",
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Tasks 0..n-1 of the split")] = 100,
    workers: Annotated[int, typer.Option(min=1, help="Processes building in parallel")] = 1,
    kw: KwOption = None,
) -> None:
    """Build a split's tasks ahead of time (e.g. generate and cache TextWorld games), with a progress bar."""
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import Progress

    import agentenv
    from agentenv.core import task_seeds

    env_id = agentenv.registry.resolve_id(env_id)
    kwargs = _parse_kwargs(kw)
    seeds = task_seeds(split, count)
    agentenv.make(env_id, **kwargs).close()  # validate id and kwargs before starting workers
    with Progress(console=console) as progress, ProcessPoolExecutor(workers) as pool:
        task = progress.add_task(f"preparing {split} tasks of {env_id}", total=len(seeds))
        for _ in pool.map(_prepare_one, [(env_id, kwargs, s) for s in seeds]):
            progress.advance(task)
    console.print(f"prepared {len(seeds)} {split} tasks of {env_id}")


def _prepare_one(job: tuple[str, dict[str, Any], int]) -> None:
    import agentenv

    env_id, kwargs, seed = job
    env = agentenv.make(env_id, **kwargs)
    try:
        env.unwrapped.prepare_task(seed)
    finally:
        env.close()


@app.command()
def rollout(
    env_id: str,
    policy: Annotated[str, typer.Option(help="random | walkthrough")] = "random",
    episodes: Annotated[int, typer.Option(min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Episode i uses reset(seed=seed+i)")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write episodes as JSONL here")] = None,
    kw: KwOption = None,
) -> None:
    """Play episodes with a scripted policy, print metrics, optionally save them as JSONL (chat format included)."""
    summary = _run_rollouts(env_id, [policy], episodes, seed, _parse_kwargs(kw), output)
    _print_summary(env_id, summary)


@app.command("sft-data")
def sft_data(
    env_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL of chats, one episode per line")],
    split: Annotated[str, typer.Option(help="train | validation | test")] = "train",
    episodes: Annotated[int, typer.Option(min=1, help="Tasks 0..n-1 of the split")] = 100,
    policy: Annotated[str, typer.Option(help="The expert: walkthrough | random")] = "walkthrough",
    only_success: Annotated[bool, typer.Option(help="Keep solved episodes only")] = True,
    kw: KwOption = None,
) -> None:
    """Write chat-format trajectories for SFT (load with agentenv.rollout.load_sft_dataset)."""
    from rich.progress import Progress

    import agentenv
    from agentenv.policies import make_policy
    from agentenv.rollout import play_episode, write_jsonl

    env_id = agentenv.registry.resolve_id(env_id)
    make_policy(policy)
    env = agentenv.make(env_id, split=split, **_parse_kwargs(kw))
    kept = []
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{policy} on {split} tasks of {env_id}", total=episodes)
            for i in range(episodes):
                episode = play_episode(env, make_policy(policy, seed=i), seed=i, env_id=env_id)
                if episode.success or not only_success:
                    kept.append(episode)
                progress.advance(task)
    finally:
        env.close()
    write_jsonl(kept, output, sft=True)
    console.print(f"wrote {len(kept)} of {episodes} episodes to {output}")


@app.command("eval")
def evaluate(
    env_id: str,
    policy: Annotated[
        str,
        typer.Option(
            help="random | walkthrough | model:NAME|PATH (model:default = the offline small model) | "
            "openai:URL[#MODEL] (an OpenAI-compatible server: vLLM, SGLang, llama.cpp, a hosted API) | vllm:PATH"
        ),
    ] = "model:default",
    episodes: Annotated[int, typer.Option(min=1, help="Tasks 0..n-1 of the split")] = 20,
    split: Annotated[str, typer.Option(help="train | validation | test")] = "test",
    batch_size: Annotated[int, typer.Option(min=1, help="Episodes played at once (model policies)")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 32,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.0,
    max_context_tokens: Annotated[int, typer.Option(min=64)] = 4096,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Trajectories as JSONL")] = None,
    html: Annotated[Path | None, typer.Option(help="A page to read the episodes")] = None,
    kw: KwOption = None,
) -> None:
    """Run a policy on an env's test tasks and print the standard metrics (success with 95% CI, turns, ...)."""
    from rich.progress import Progress

    import agentenv
    from agentenv.policies import Sampling, build_policy, tool_chat_format
    from agentenv.policy import SCRIPTED, TokenPolicy, parse_backend
    from agentenv.rollout import play_episode, rollout, summarize, write_html, write_jsonl

    env_id = agentenv.registry.resolve_id(env_id)
    kwargs = _parse_kwargs(kw)
    backend = parse_backend(policy)
    envs = [agentenv.make(env_id, split=split, **kwargs)]  # bad env arguments fail before a model loads
    try:
        runner = None
        if backend.kind not in SCRIPTED:
            with console.status(f"loading {policy}"):
                sampling = Sampling(max_new_tokens, temperature)
                runner = build_policy(policy, sampling=sampling, batch_size=batch_size, threads=threads)
            if isinstance(runner, TokenPolicy) and runner.tokenizer is None:
                err.print(f"[yellow]no tokenizer for {backend.model!r}:[/] playing {policy} in chat mode (text only)")
        batched = isinstance(runner, TokenPolicy) and runner.tokenizer is not None
        envs += [agentenv.make(env_id, split=split, **kwargs) for _ in range(batch_size - 1 if batched else 0)]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{policy} on {split} tasks of {env_id}", total=episodes)
            if batched:
                chat_format = tool_chat_format(runner.tokenizer, envs[0].unwrapped.tools)
                played = rollout(
                    envs, runner, chat_format, range(episodes), env_id=env_id, policy_name=policy,
                    max_context_tokens=max_context_tokens, on_episode=lambda _: progress.advance(task),
                )  # fmt: skip
            else:
                played = []
                for i in range(episodes):
                    player = runner if runner is not None else build_policy(policy, seed=i)
                    played.append(play_episode(envs[0], player, seed=i, env_id=env_id))
                    progress.advance(task)
    finally:
        for env in envs:
            env.close()
    metrics = summarize(played)
    table = Table(title=f"{policy} on {env_id} ({split}, {episodes} episodes)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("success rate", f"{metrics['success_rate']:.3f}  [{metrics['success_ci_low']:.3f}, "
                  f"{metrics['success_ci_high']:.3f}] 95% CI")  # fmt: skip
    for key in ("mean_return", "mean_turns", "invalid_rate", "truncation_rate", "error_rate", "turns_over_optimal"):
        table.add_row(key.replace("_", " "), _fmt(metrics[key]))
    for key in (k for k in metrics if k.startswith("reward_parts.")):
        table.add_row(key, _fmt(metrics[key]))
    console.print(table)
    if output is not None:
        console.print(f"wrote {write_jsonl(played, output)} trajectories to {output}")
    if html is not None:
        console.print(f"wrote {write_html(played, html, title=f'{policy} on {env_id}')} episodes to {html}")


def _run_rollouts(
    env_id: str, policies: list[str], episodes: int, seed: int, kwargs: dict[str, Any], output: Path | None
) -> dict[str, dict[str, float]]:
    from rich.progress import Progress

    import agentenv
    from agentenv.policies import make_policy
    from agentenv.rollout import play_episode, summarize, write_jsonl

    env_id = agentenv.registry.resolve_id(env_id)
    for name in policies:
        make_policy(name)  # validate names before any work
    env = agentenv.make(env_id, **kwargs)
    results, played = {}, []
    try:
        with Progress(console=console, transient=True) as progress:
            for name in policies:
                task = progress.add_task(f"{name} on {env_id}", total=episodes)
                runs = []
                for i in range(episodes):
                    runs.append(play_episode(env, make_policy(name, seed=seed + i), seed=seed + i, env_id=env_id))
                    progress.advance(task)
                results[name] = summarize(runs)
                played += runs
    finally:
        env.close()
    if output is not None:
        n = write_jsonl(played, output)
        console.print(f"wrote {n} episodes to {output}")
    return results


def _print_summary(env_id: str, summary: dict[str, dict[str, float]]) -> None:
    columns = {
        "episodes": "episodes",
        "success_rate": "success",
        "mean_return": "return",
        "mean_turns": "turns",
        "invalid_rate": "invalid",
        "turns_over_optimal": "turns/optimal",
    }
    table = Table(title=env_id)
    table.add_column("policy")
    for header in columns.values():
        table.add_column(header, justify="right")
    for name, metrics in summary.items():
        table.add_row(name, *(_fmt(metrics.get(key)) for key in columns))
    console.print(table)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.3f}"
    return str(x)


@app.command("redteam")
def redteam_command(
    env_id: str,
    episodes: Annotated[int, typer.Option(min=1, help="Test tasks 0..n-1 per hack")] = 4,
    margin: Annotated[
        float, typer.Option(min=0.0, help="A hack beats the no-op when its mean return exceeds the no-op's by more")
    ] = DEFAULT_MARGIN,
    fail_on_hack: Annotated[bool, typer.Option(help="Exit 1 when any hack beats the no-op (for CI)")] = False,
    split: Annotated[str, typer.Option(help="train | validation | test")] = "test",
    hack: Annotated[
        list[str] | None, typer.Option(help="Only these hacks (repeatable); no-op and oracle always")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report as JSON")] = None,
    kw: KwOption = None,
) -> None:
    """Play scripted reward hacks against an env beside its oracle (walkthrough) and no-op; flag each hack whose
    mean return beats the no-op's by more than --margin. Families add hacks through agentenv.redteam.register_hack."""
    from rich.progress import Progress

    from agentenv.redteam import redteam

    kwargs = _parse_kwargs(kw)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"red-teaming {env_id}", total=None)

        def advance(name: str, played: int, total: int) -> None:
            progress.update(task, completed=played, total=total, description=f"{name} on {env_id}")

        report = redteam(env_id, episodes, margin=margin, split=split, env_kwargs=kwargs, only=hack, on_episode=advance)
    env_id = report.env_id
    table = Table(title=f"red team: {env_id} ({split} tasks 0..{episodes - 1}, margin {margin:g})")
    for column in ("hack", "kind", "mean return", "± std", "max", "success", "Δ vs no-op", "verdict", "description"):
        table.add_column(column, justify="left" if column in ("hack", "kind", "verdict", "description") else "right")
    for r in report.results:
        verdict = "[bold red]BEATS NO-OP[/]" if r.beats_noop else ("[green]ok[/]" if r.kind == "hack" else "")
        table.add_row(r.name, r.kind, f"{r.mean:.3f}", f"{r.std:.3f}", f"{r.max:.3f}", f"{r.success_rate:.0%}",
                      f"{r.delta:+.3f}", verdict, r.description)  # fmt: skip
    console.print(table)
    oracle = report.oracle
    if oracle is not None and oracle.delta <= margin:
        err.print("[yellow]the oracle does not beat the no-op: this reward cannot tell solving from doing nothing[/]")
    if output is not None:
        output.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {output}")
    beaten = report.beaten
    console.print(
        f"[bold red]{len(beaten)} hack(s) beat the no-op:[/] {', '.join(r.name for r in beaten)}"
        if beaten
        else f"no hack beats the no-op ({report.noop.name}) by more than {margin:g}"
    )
    if beaten and fail_on_hack:
        raise typer.Exit(1)


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. demo-env")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the package folder")] = Path("."),
) -> None:
    """Scaffold a plugin package: an env, its entry point, and a test that runs the contract check."""
    from agentenv.scaffold import scaffold

    root = scaffold(name, directory)
    console.print(f"created {root}")
    console.print(f"next: pip install -e {root} && agentenv list && pytest {root}")


@app.command("judge-audit")
def judge_audit(
    judge: Annotated[
        str,
        typer.Option(
            help="pointwise | exact | model:PATH (a local or trained judge) | openai:URL#MODEL | module:attr "
            "(a Reward instance, Reward class or factory)"
        ),
    ] = "pointwise",
    cases: Annotated[
        Path | None,
        typer.Option(help="Labelled JSONL: question, reference, response, label 1/0, optional category/attack"),
    ] = None,
    guards: Annotated[
        bool, typer.Option("--guards/--no-guards", help="Put the rule guards in front of the judge")
    ] = False,
    threshold: Annotated[float, typer.Option(help="A score at or above it counts as the judge accepting")] = 0.5,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N cases, spread over the categories")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Cases per judge call")] = 16,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report (every case) as JSON")] = None,
    pairwise: Annotated[
        bool,
        typer.Option(
            "--pairwise",
            help="Audit a pairwise judge (model:/openai: build a PairwiseJudge) on pairs of a correct and a wrong "
            "response: error and position-inconsistency rates. --cases may hold pairs (a, b, label A/B) or "
            "pointwise cases, which are paired by question",
        ),
    ] = False,
) -> None:
    """Audit a judge: false positives on master-key probes and wrong answers, false negatives on correct ones.

    Default cases: the built-in master keys (":", "Thought process:", "解", ...) as answers to the built-in
    questions, plus correct answers to them in varied formats.
    """
    from rich.progress import Progress

    from agentenv.rewards.antihack import audit, default_cases, guarded, load_cases, resolve_judge, spread

    if pairwise:
        _audit_pairwise(judge, cases, limit, batch_size, output)
        return
    loaded = load_cases(cases) if cases is not None else None
    skipped = loaded.skipped if loaded else []
    for number, why in skipped[:10]:
        err.print(f"[yellow]skipped line {number}:[/] {why}")
    if skipped:
        total = len(skipped) + len(loaded.cases)
        err.print(f"[yellow]skipped {len(skipped)} of {total} lines of {cases}[/] (kept {len(loaded.cases)})")
    todo = spread(loaded.cases if loaded else default_cases(), limit)
    reward = resolve_judge(judge)
    name = f"{judge} + guards" if guards else judge
    if guards:
        reward = guarded(reward)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"judging {len(todo)} cases with {name}", total=len(todo))
        report = audit(reward, todo, threshold, batch_size, name=name, progress=lambda n: progress.advance(task, n))
    _print_audit(report)
    if output is not None:
        record = {
            "cases": str(cases) if cases is not None else "built-in",
            "skipped": [{"line": n, "reason": why} for n, why in skipped],
            **report.to_dict(),
        }
        output.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {output}")


def _audit_pairwise(judge: str, cases: Path | None, limit: int | None, batch_size: int, output: Path | None) -> None:
    from agentenv.envs.judge.data import pairwise_cases
    from agentenv.errors import ConfigError
    from agentenv.rewards.antihack import audit_pairwise, default_cases, load_cases, resolve_judge

    pairs: list[dict[str, Any]] | None = None
    if cases is not None:
        rows = []
        with cases.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{cases}:{n}: not valid JSON ({e.msg})") from e
        if rows and all(isinstance(r, dict) and {"a", "b", "label", "question"} <= r.keys() for r in rows):
            pairs = rows
    if pairs is None:
        pairs = pairwise_cases(load_cases(cases).cases if cases is not None else default_cases())
    todo = list({str(p.get("pair_id", i)): p for i, p in enumerate(pairs)}.values())[:limit]
    if not todo:
        raise ConfigError(f"{cases or 'the built-in cases'}: no pair of a correct and a wrong response to one question")
    report = audit_pairwise(resolve_judge(judge, "pairwise"), todo, batch_size, name=judge)
    table = Table(title=f"pairwise judge audit: {judge} ({report.pairs} pairs, both orders)")
    for column in ("wrong response's category", "pairs", "error rate", "inconsistency rate"):
        table.add_column(column, justify="left" if column.startswith("wrong") else "right")
    for category, row in sorted(report.by_category.items()):
        table.add_row(category, str(row["pairs"]), f"{row['error_rate']:.1%}", f"{row['inconsistency_rate']:.1%}")
    table.add_section()
    table.add_row("[bold]overall[/]", str(report.pairs), f"{report.error_rate:.1%}", f"{report.inconsistency_rate:.1%}")
    console.print(table)
    console.print(f"[dim]{report.pairs} pairs in {report.seconds:.1f}s; error: the combined preference does not favour "
                  "the correct response; inconsistent: the two orders' verdicts pick the same position[/]")  # fmt: skip
    if output is not None:
        output.write_text(json.dumps({"cases": str(cases) if cases else "built-in", **report.to_dict()}, indent=1))
        console.print(f"wrote {output}")


def _print_audit(report: Any) -> None:
    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1%}"

    def add(table: Table, label: str, r: Any, auc: float) -> None:
        table.add_row(label, str(r.cases), f"{r.false_positives}/{r.negatives}", pct(r.fpr),
                      f"{r.false_negatives}/{r.positives}", pct(r.fnr),
                      _fmt(r.mean_negative_score), _fmt(r.mean_positive_score), _fmt(auc))  # fmt: skip

    table = Table(title=f"judge audit: {report.judge} (accepts at score >= {report.threshold:g})")
    columns = ("category", "cases", "FP", "FPR", "FN", "FNR", "mean score (label 0)", "mean score (label 1)", "AUROC")
    for column in columns:
        table.add_column(column, justify="left" if column == "category" else "right")
    aucs = report.category_auroc()
    for label, r in sorted(report.by_category.items(), key=lambda item: (item[1].positives > 0, item[0])):
        add(table, label, r, aucs.get(label, math.nan))
    table.add_section()
    add(table, "[bold]overall[/]", report.overall, report.auroc)
    console.print(table)
    if attacks := report.worst_attacks(10):
        worst = Table(title="attacks that fooled the judge, worst first")
        for column in ("attack", "FPR", "mean score"):
            worst.add_column(column, justify="left" if column == "attack" else "right")
        for attack, r in attacks:
            worst.add_row(attack, f"{pct(r.fpr)} ({r.false_positives}/{r.negatives})", _fmt(r.mean_negative_score))
        console.print(worst)
    elif misjudged := report.worst_cases(10):
        worst = Table(title="misjudged cases, surest first")
        for column in ("id", "label", "score", "response", "reason"):
            worst.add_column(column, overflow="fold")
        for r in misjudged:
            worst.add_row(r.case.id, str(r.case.label), f"{r.score:.3f}", r.case.response[:80], r.reason[:80])
        console.print(worst)
    auc = "" if math.isnan(report.auroc) else f", AUROC {report.auroc:.3f}"
    console.print(f"[dim]{report.overall.cases} cases in {report.seconds:.1f}s{auc}[/]")


def _recipe_source(recipe: str) -> Path:
    from agentenv.recipes.config import packaged_recipe

    path = Path(recipe)
    return path if path.suffix in (".yaml", ".yml") or path.exists() else packaged_recipe(recipe)


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe field: section.field=value (repeatable), e.g. -s rl.lr=1e-5"),
]


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="A recipe YAML file, or the name of a packaged recipe (e.g. demo)")],
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the recipe's)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the output folder from its checkpoints")] = False,
) -> None:
    """Run a training recipe: evaluate, SFT, RL, evaluate again; metrics, checkpoints and a report in one folder."""
    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import run_recipe

    overrides = list(set_ or []) + ([f"output.dir={output}"] if output is not None else [])
    loaded = load_recipe(_recipe_source(recipe), overrides)
    import os

    from agentenv.policies.rl import DivergedError

    main_process = os.environ.get("RANK", "0") == "0"  # under accelerate/torchrun only rank 0 reports
    try:
        results = run_recipe(loaded, resume=resume, console=console if main_process else None)
    except DivergedError as e:
        _diverged(e)
    if main_process and loaded.verdict is not None:
        from agentenv.recipes.verdict import print_verdict_results

        print_verdict_results(console, results)
    elif main_process:
        _print_evaluations(loaded.name, results)


@app.command()
def grid(
    grid_file: Annotated[str, typer.Argument(help="A grid YAML file, or the name of a packaged grid (e.g. budget)")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a grid field (repeatable): -s budget=256 -s recipe.rl.lr=1e-5"),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default: the grid's)")] = None,
) -> None:
    """Split one training budget between SFT demonstrations and RL episodes at several SFT fractions; run each cell
    (finished cells are skipped), then write grid.json, grid.md and grid.png and print the table."""
    from agentenv.recipes.grid import grid_table, load_grid, run_grid

    overrides = list(set_ or []) + ([f"output={output}"] if output is not None else [])
    loaded = load_grid(_recipe_source(grid_file), overrides)
    summary = run_grid(loaded, console=console)
    header, rows = grid_table(summary)
    table = Table(title=f"{loaded.name}: budget {loaded.budget:g} RL episodes, 1 SFT demo = {loaded.sft_cost:g}")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    out = loaded.output_dir
    console.print(f"table: {out / 'grid.md'}  plot: {out / 'grid.png'}  data: {out / 'grid.json'}")


def _diverged(e: Exception) -> None:
    """A run stopped on a non-finite loss, gradient or weight: say so without a traceback, exit 1."""
    from rich.markup import escape

    err.print(f"[bold red]training stopped:[/] {escape(str(e))}. No final model was written; the last "
              "checkpoint, if any, holds finite weights: lower the learning rate or check the data.")  # fmt: skip
    raise typer.Exit(1) from e


def _print_evaluations(name: str, results: dict[str, Any]) -> None:
    evaluations = results["evaluations"]
    envs = sorted({s.get("env_id", "") for s in evaluations.values()})
    table = Table(title=f"{name}: held-out test tasks of {', '.join(e.split('/')[-1] for e in envs)}")
    for column in ("evaluation", "episodes", "success", "95% CI", "return", "turns", "invalid"):
        table.add_column(column, justify="left" if column == "evaluation" else "right")
    for label, s in evaluations.items():
        table.add_row(label, str(s["episodes"]), f"{s['success_rate']:.1%}",
                      f"{s['success_ci_low']:.0%}-{s['success_ci_high']:.0%}", f"{s['mean_return']:.2f}",
                      f"{s['mean_turns']:.1f}", f"{s['invalid_rate']:.0%}")  # fmt: skip
    console.print(table)
    seconds = results.get("seconds", {})
    console.print("[dim]" + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()) + "[/]")


@app.command()
def demo(
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder")] = None,
) -> None:
    """The main job on embedded defaults: the demo recipe (SFT on walkthroughs, then PPO) on a tiny TextWorld
    preset with the offline small model; prints success on held-out tasks before and after, and a plot."""
    import time

    from agentenv.recipes.config import load_recipe, packaged_recipe
    from agentenv.recipes.run import run_recipe

    folder = output or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    from agentenv.policies.rl import DivergedError

    loaded = load_recipe(packaged_recipe("demo"), [*(set_ or []), f"output.dir={folder}"])
    try:
        results = run_recipe(loaded, console=console)
    except DivergedError as e:
        _diverged(e)
    _print_evaluations(loaded.name, results)
    console.print(f"report: {folder / 'report.html'}  plot: {folder / 'curves.png'}  model: {folder / 'final'}")


@app.command()
def clean(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing")] = False,
    base_dir: Annotated[
        Path | None, typer.Option(help="Where the sandboxes put their folders (default: the temp dir)")
    ] = None,
) -> None:
    """Remove what the sandboxes of killed processes left: their workdirs (tmpfs quotas unmounted) and cgroups.

    Only folders and cgroups whose owner mark names a process that is gone; never a live process's. Opening a
    sandbox does the same on its folder, at most once a minute.
    """
    from agentenv.sandbox import reclaim_leftovers

    found = reclaim_leftovers(base_dir, dry_run=dry_run)
    for leftover in found:
        what = f"{leftover.kind} {leftover.path}" + (" (tmpfs mounted)" if leftover.mounted else "")
        console.print(f"{'would remove' if dry_run else 'removed'} {what} of dead process {leftover.owner_pid}",
                      soft_wrap=True)  # fmt: skip
    if not found:
        console.print("nothing to clean")


if __name__ == "__main__":
    main()
