"""Commands that play policies: ``agentenv rollout`` (scripted policies, metrics), ``sft-data`` (expert chats for
SFT) and ``eval`` (any backend on an env's test tasks).

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``policies`` (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.terminal import KwOption, console, err, fmt_metric, parse_kwargs


def register(app: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv rollout``, ``sft-data`` and ``eval``."""
    app.command()(rollout)
    app.command("sft-data")(sft_data)
    app.command("eval")(evaluate)


def rollout(
    env_id: str,
    policy: Annotated[
        str, typer.Option(help="random | walkthrough | model:NAME|PATH | openai:URL[#MODEL] | vllm:PATH")
    ] = "random",
    episodes: Annotated[int, typer.Option(min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Episode i uses reset(seed=seed+i)")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write episodes as JSONL here")] = None,
    kw: KwOption = None,
) -> None:
    """Play episodes one at a time with any policy (a model samples), print metrics, optionally save them as JSONL
    (chat format included). `agentenv eval` batches model policies on an env's test tasks."""
    summary = _run_rollouts(env_id, [policy], episodes, seed, parse_kwargs(kw), output)
    _print_summary(env_id, summary)


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
    env = agentenv.make(env_id, split=split, **parse_kwargs(kw))
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
    opponent: Annotated[str | None, typer.Option(help="Games: the other seats, random | expert | model:...")] = None,
    kw: KwOption = None,
) -> None:
    """Run a policy on an env's test tasks and print the standard metrics (success with 95% CI, turns, ...). On a
    multi-agent game: play --episodes games against --opponent, seats alternating, and print win / draw / loss rates
    with 95% CIs."""
    if (game_id := _game_id(env_id, opponent)) is not None:
        sampling = (max_new_tokens, temperature, max_context_tokens, batch_size, threads)
        return _evaluate_game(game_id, policy, opponent or "random", episodes, sampling, parse_kwargs(kw), output)
    from rich.progress import Progress

    import agentenv
    from agentenv.policies import Sampling, build_policy, tool_chat_format
    from agentenv.policy import SCRIPTED, TokenPolicy, parse_backend
    from agentenv.rollout import EpisodeProgress, play_episode, rollout, summarize, write_html, write_jsonl

    env_id = agentenv.registry.resolve_id(env_id)
    kwargs = parse_kwargs(kw)
    backend = parse_backend(policy)
    envs = [agentenv.make(env_id, split=split, **kwargs)]  # bad env arguments fail before a model loads
    try:
        runner = None
        if backend.kind not in SCRIPTED:
            with console.status(f"loading {policy}"):
                runner = build_policy(policy, sampling=Sampling(max_new_tokens, temperature), batch_size=batch_size,
                                      threads=_threads_for(policy, threads))  # fmt: skip
            if isinstance(runner, TokenPolicy) and runner.tokenizer is None:
                err.print(f"[yellow]no tokenizer for {backend.model!r}:[/] playing {policy} in chat mode (text only)")
        batched = isinstance(runner, TokenPolicy) and runner.tokenizer is not None
        envs += [agentenv.make(env_id, split=split, **kwargs) for _ in range(batch_size - 1 if batched else 0)]
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{policy} on {split} tasks of {env_id}", total=episodes)
            if batched:
                chat_format = tool_chat_format(runner.tokenizer, envs[0].unwrapped.tools)
                bar = EpisodeProgress(lambda n: progress.advance(task, n), envs[0].unwrapped.max_turns)
                played = rollout(
                    envs, runner, chat_format, range(episodes), env_id=env_id, policy_name=policy,
                    max_context_tokens=max_context_tokens, on_episode=bar.episode, on_turn=bar.turn,
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
    console.print(_metrics_table(f"{policy} on {env_id} ({split}, {episodes} episodes)", summarize(played)))
    if output is not None:
        console.print(f"wrote {write_jsonl(played, output)} trajectories to {output}")
    if html is not None:
        console.print(f"wrote {write_html(played, html, title=f'{policy} on {env_id}')} episodes to {html}")


def _metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    """The standard metrics of an evaluation (:func:`agentenv.rollout.summarize`) as a table."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("success rate", f"{metrics['success_rate']:.3f}  [{metrics['success_ci_low']:.3f}, "
                  f"{metrics['success_ci_high']:.3f}] 95% CI")  # fmt: skip
    for key in ("mean_return", "mean_turns", "invalid_rate", "truncation_rate", "error_rate", "turns_over_optimal"):
        table.add_row(key.replace("_", " "), fmt_metric(metrics[key]))
    for key in (k for k in metrics if k.startswith("reward_parts.")):
        table.add_row(key, fmt_metric(metrics[key]))
    return table


def _threads_for(spec: str, threads: int | None) -> int | None:
    """The torch threads of a local model runner (``--threads``, else the cores free now), said on the console;
    other runners keep ``threads`` as given."""
    from agentenv.models import choose_threads
    from agentenv.policy import parse_backend

    if parse_backend(spec).kind != "model":
        return threads
    threads, note = choose_threads(threads)
    console.print(note)
    return threads


def _game_id(env_id: str, opponent: str | None) -> str | None:
    """The multi-agent game ``env_id`` names, or None; ``--opponent`` is for games only."""
    from agentenv.errors import ConfigError, UnknownEnvError
    from agentenv.registry import multi_spec

    try:
        return multi_spec(env_id).id
    except UnknownEnvError:
        if opponent is not None:
            raise ConfigError(f"--opponent is for multi-agent games; {env_id!r} is not one") from None
        return None


def _game_player(role: str, spec: str, sampling: tuple[Any, ...], seed: int) -> Any:
    """A seat's player: ``expert`` (or ``optimal``) and ``random`` are the game's scripted players; any other spec
    is a model runner, which must have a tokenizer (games are played token-exact)."""
    from agentenv.errors import ConfigError
    from agentenv.multi_rollout import ScriptedSeat, is_token_policy
    from agentenv.policies import Sampling, build_policy
    from agentenv.policy import SCRIPTED, parse_backend

    if spec in ("expert", "optimal", "random"):
        return ScriptedSeat("random" if spec == "random" else "expert", seed=seed)
    try:
        if parse_backend(spec).kind in SCRIPTED:
            raise ConfigError("a single-agent scripted policy")
    except ConfigError:
        allowed = "expert (or optimal), random, model:NAME|PATH, openai:URL#MODEL, vllm:PATH"
        raise ConfigError(f"{role}={spec!r} cannot play a game; choose one of {allowed}") from None
    max_new_tokens, temperature, _, batch_size, threads = sampling
    with console.status(f"loading {spec}"):
        runner = build_policy(spec, sampling=Sampling(max_new_tokens, temperature), batch_size=batch_size,
                              threads=_threads_for(spec, threads))  # fmt: skip
    if not is_token_policy(runner):
        raise ConfigError(
            f"{spec!r} cannot sit at a game: it needs a model runner with a tokenizer, or expert | random"
        )
    return runner


def _evaluate_game(
    game_id: str, policy: str, opponent: str, games: int, sampling: tuple[Any, ...], kwargs: dict[str, Any],
    output: Path | None,
) -> None:  # fmt: skip
    """``agentenv eval`` on a game: ``policy`` against ``opponent`` in every seat in turn (``evaluate_games``)."""
    import json

    import agentenv
    from agentenv.multi_rollout import evaluate_games, is_token_policy

    envs = [agentenv.make_multi(game_id, **kwargs)]  # bad knobs fail before a model loads
    player = _game_player("policy", policy, sampling, seed=0)
    other = _game_player("opponent", opponent, sampling, seed=1)
    if is_token_policy(player) or is_token_policy(other):
        envs += [agentenv.make_multi(game_id, **kwargs) for _ in range(sampling[3] - 1)]
    with console.status(f"{policy} against {opponent} on {game_id}, {games} games"):
        evaluation = evaluate_games(envs, player, other, games, name=policy, opponent_name=opponent,
                                    max_context_tokens=sampling[2], env_id=game_id)  # fmt: skip
    summary = evaluation.summary()
    table = Table(title=f"{policy} against {opponent} on {game_id} ({summary['games']} games, seats alternating)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("win", "draw", "loss"):
        rate, low, high = (summary[f"{key}_{part}"] for part in ("rate", "ci_low", "ci_high"))
        table.add_row(f"{key} rate", f"{rate:.3f}  [{low:.3f}, {high:.3f}] 95% CI")
    for key in ("wins", "draws", "losses", "errors", "mean_outcome", "invalid_rate"):
        table.add_row(key.replace("_", " "), fmt_metric(summary[key]))
    console.print(table)
    if output is not None:
        output.write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"wrote the summary to {output}")


def _run_rollouts(
    env_id: str, policies: list[str], episodes: int, seed: int, kwargs: dict[str, Any], output: Path | None
) -> dict[str, dict[str, float]]:
    from rich.progress import Progress

    import agentenv
    from agentenv.policies import build_policy, make_policy
    from agentenv.policy import SCRIPTED, parse_backend
    from agentenv.rollout import play_episode, summarize, write_jsonl

    env_id = agentenv.registry.resolve_id(env_id)
    backends = {name: parse_backend(name) for name in policies}  # validate names before any work
    env = agentenv.make(env_id, **kwargs)
    results, played = {}, []
    try:
        with Progress(console=console, transient=True) as progress:
            for name in policies:
                runner = None if backends[name].kind in SCRIPTED else build_policy(name, seed=seed)
                task = progress.add_task(f"{name} on {env_id}", total=episodes)
                runs = []
                for i in range(episodes):
                    policy = runner if runner is not None else make_policy(name, seed=seed + i)
                    runs.append(play_episode(env, policy, seed=seed + i, env_id=env_id))
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
        table.add_row(name, *(fmt_metric(metrics.get(key)) for key in columns))
    console.print(table)
