"""Commands that play policies: ``agentenv rollout`` (scripted policies, metrics), ``sft-data`` (expert chats for
SFT), ``eval`` (any backend on an env's test tasks, or against an opponent at a game) and ``elo`` (a round robin of
game players rated on the Elo scale).

Added to the ``agentenv`` command through the ``agentenv.cli`` entry point ``policies`` (:func:`register`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.terminal import KwOption, console, err, fmt_metric, parse_kwargs


def register(app: typer.Typer) -> None:
    """The ``agentenv.cli`` entry point: ``agentenv rollout``, ``sft-data``, ``eval`` and ``elo``; and the builder of
    model players for the core's ``agentenv play --opponent``."""
    app.command()(rollout)
    app.command("sft-data")(sft_data)
    app.command("eval")(evaluate)
    app.command("elo")(elo)
    from agentenv.multi_rollout import register_seat_builder

    register_seat_builder(_game_player)  # `agentenv play --opponent model:...` seats the runners built here


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
            described = f"{policy} on {split} tasks of {env_id}"
            task = progress.add_task(described, total=episodes)
            if batched:
                chat_format = tool_chat_format(runner.tokenizer, envs[0].unwrapped.tools)
                bar = EpisodeProgress(
                    lambda n: progress.advance(task, n), envs[0].unwrapped.max_turns,
                    lambda text: progress.update(task, description=f"{described} ({text})" if text else described),
                )  # fmt: skip
                played = rollout(
                    envs, runner, chat_format, range(episodes), env_id=env_id, policy_name=policy,
                    max_context_tokens=max_context_tokens, on_episode=bar.episode, on_turn=bar.turn,
                    on_tokens=bar.tokens,
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


GAME_PLAYERS = (
    "expert (or optimal), random, model:NAME|PATH, openai:URL#MODEL, vllm:PATH, a model folder, tiny, default"
)


def _game_spec(role: str, spec: str) -> str:
    """A game player's spec in one form: the scripted names and ``openai:`` as given; a model folder, a recipe run's
    folder (its ``final/`` model), ``tiny`` or ``default`` as ``model:...``; the folder of a ``model:`` or ``vllm:``
    spec resolved (so one model has one spec, and loads once)."""
    from agentenv.errors import ConfigError
    from agentenv.multi_rollout import SCRIPTED_SEATS
    from agentenv.policy import MODEL_KINDS, parse_backend

    if spec in SCRIPTED_SEATS:
        return spec
    kind, colon, target = spec.partition(":")
    if not (colon and kind in MODEL_KINDS):
        if spec not in ("tiny", "default") and not Path(spec).expanduser().is_dir():
            raise ConfigError(f"{role}={spec!r} cannot play a game; choose one of {GAME_PLAYERS}")
        kind, target = "model", spec
    backend = parse_backend(f"{kind}:{target}", role)
    folder = Path(backend.target).expanduser()
    if kind == "openai" or not folder.is_dir():
        return f"{kind}:{target}"
    return f"{kind}:{_model_folder(role, spec, folder)}"


def _model_folder(role: str, spec: str, folder: Path) -> Path:
    """The folder under ``folder`` that holds a model ``load_model`` reads: ``folder`` itself (``config.json``, a LoRA
    adapter or a GGUF file: a model, ``final/`` or a checkpoint of a recipe run), or a recipe run's ``final/``."""
    from agentenv.errors import ConfigError

    def holds_model(path: Path) -> bool:
        markers = ("config.json", "adapter_config.json")
        return any((path / name).is_file() for name in markers) or any(path.glob("*.gguf"))

    if holds_model(folder):
        return folder.resolve()
    if holds_model(folder / "final"):
        return (folder / "final").resolve()
    found = sorted(str(p) for p in folder.glob("checkpoints/*") if holds_model(p))
    hint = f"; its checkpoints: {', '.join(found)}" if found else ""
    raise ConfigError(f"{role}={spec!r}: {folder} holds no model (config.json) and no final/ model of a recipe "
                      f"run{hint}")  # fmt: skip


def _game_player(role: str, spec: str, sampling: tuple[Any, ...], seed: int) -> Any:
    """A seat's player: ``expert`` (or ``optimal``) and ``random`` are the game's scripted players; any other spec
    (see :func:`_game_spec`) is a model runner, which must have a tokenizer (games are played token-exact).
    ``sampling`` is ``(max_new_tokens, temperature, max_context_tokens, batch_size, threads)``. The builder of
    :func:`agentenv.multi_rollout.seat_player` (``agentenv play --opponent``)."""
    from agentenv.errors import ConfigError
    from agentenv.multi_rollout import SCRIPTED_SEATS, ScriptedSeat, is_token_policy
    from agentenv.policies import Sampling, build_policy

    spec = _game_spec(role, spec)
    if spec in SCRIPTED_SEATS:
        return ScriptedSeat(SCRIPTED_SEATS[spec], seed=seed)
    max_new_tokens, temperature, _, batch_size, threads = sampling
    with console.status(f"loading {spec}"):
        runner = build_policy(spec, sampling=Sampling(max_new_tokens, temperature), batch_size=batch_size,
                              threads=_threads_for(spec, threads))  # fmt: skip
    if not is_token_policy(runner):
        raise ConfigError(
            f"{role}={spec!r} cannot sit at a game: it needs a model runner with a tokenizer, or expert | random"
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


def elo(
    game_id: Annotated[str, typer.Argument(metavar="GAME", help="A multi-agent game, e.g. AgentEnv/Nim-v0")],
    players: Annotated[
        list[str],
        typer.Argument(
            metavar="PLAYER...",
            help=f"Two or more, each SPEC or NAME=SPEC; SPEC: {GAME_PLAYERS} (a recipe run's folder plays its final/)",
        ),
    ],
    games: Annotated[int, typer.Option(min=1, help="Games per pair, seats alternating")] = 20,
    seed: Annotated[int, typer.Option(help="Each pair plays game seeds from this one")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Games played at once (model players)")] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 32,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.0,
    max_context_tokens: Annotated[int, typer.Option(min=64)] = 4096,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write ratings, counts and every pair here")] = None,
    kw: KwOption = None,
) -> None:
    """Rate game players on the Elo scale: a round robin (every pair plays --games games, seats alternating over
    each seed), Bradley-Terry ratings of all the games (1000 = an even record), and each player's wins, draws and
    losses. Players are scripted (expert, random) or models: checkpoints of a self-play run, any model folder."""
    import json

    import agentenv
    from agentenv.multi_rollout import elo_ratings, evaluate_games, is_token_policy
    from agentenv.registry import multi_spec

    game_id = multi_spec(game_id).id  # not a game: UnknownEnvError
    kwargs = parse_kwargs(kw)
    named = _elo_players(players)
    envs = [agentenv.make_multi(game_id, **kwargs)]  # bad knobs fail before a model loads
    sampling = (max_new_tokens, temperature, max_context_tokens, batch_size, threads)
    loaded: dict[str, Any] = {}  # spec -> its player: each model loads once
    for index, (name, spec) in enumerate(named.items()):
        key = spec if spec != "random" else f"random#{index}"  # random players draw apart
        if key not in loaded:
            loaded[key] = _game_player(f"PLAYER {name}", spec, sampling, seed=index)
        named[name] = (spec, loaded[key])
    if any(is_token_policy(player) for player in loaded.values()):
        envs += [agentenv.make_multi(game_id, **kwargs) for _ in range(batch_size - 1)]
    pairs, rows = [], []
    names = list(named)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            with console.status(f"{a} against {b} on {game_id}, {games} games"):
                evaluation = evaluate_games(envs, named[a][1], named[b][1], games, seed=seed, name=a,
                                            opponent_name=b, max_context_tokens=max_context_tokens,
                                            env_id=game_id)  # fmt: skip
            pairs.append(evaluation)
            rows += evaluation.results()
    ratings = elo_ratings(rows)
    table_rows = _elo_table_rows(named, pairs, ratings)
    console.print(_elo_table(f"Elo on {game_id}: {len(names)} players, {games} games a pair", table_rows))
    if json_path is not None:
        settings = {"games_per_pair": games, "seed": seed, "temperature": temperature, "kwargs": kwargs}
        report = {"game": game_id, **settings, "players": table_rows, "pairs": [p.summary() for p in pairs]}
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote the ratings to {json_path}")


def _elo_players(players: list[str]) -> dict[str, Any]:
    """``NAME=SPEC`` or ``SPEC`` arguments as name -> normalised spec (:func:`_game_spec`); names must differ."""
    from agentenv.errors import ConfigError

    if len(players) < 2:
        raise ConfigError(f"PLAYER: give at least two players to rate, got {len(players)}")
    named: dict[str, Any] = {}
    for player in players:
        name, sep, spec = player.partition("=")
        if not sep or not name or any(c in name for c in ":/#") or not spec:
            name, spec = player, player  # no name given (a URL may hold '=')
        name = name.strip()
        if name in named:
            raise ConfigError(f"PLAYER {name!r} is given twice; name players apart with NAME=SPEC")
        named[name] = _game_spec(f"PLAYER {name}" if name != spec else "PLAYER", spec)
    return named


def _elo_table_rows(
    named: dict[str, tuple[str, Any]], pairs: list[Any], ratings: dict[str, float]
) -> list[dict[str, Any]]:
    """Each player's rating and record over the round robin (``pairs``: its evaluations), best rated first. A game
    the policy of an evaluation won, its opponent lost; failed games count as errors for both."""
    import math

    keys = ("games", "wins", "draws", "losses", "errors", "turns", "invalid")
    tally = {name: dict.fromkeys(keys, 0) for name in named}
    for evaluation in pairs:
        first, second = tally[evaluation.policy], tally[evaluation.opponent]
        record_of = {"games": evaluation.games, "draws": evaluation.draws, "errors": evaluation.errors}
        for count, wins, losses in ((first, evaluation.wins, evaluation.losses),
                                    (second, evaluation.losses, evaluation.wins)):  # fmt: skip
            for key, value in {**record_of, "wins": wins, "losses": losses}.items():
                count[key] += value
        for record, seat in zip(evaluation.records, evaluation.policy_seats, strict=True):
            for agent, trajectory in record.trajectories.items() if not record.error else ():
                count = first if agent == seat else second
                count["turns"] += len(trajectory.turns)
                count["invalid"] += sum(turn.invalid_action for turn in trajectory.turns)
    rows = []
    for name, (spec, _) in named.items():
        count = tally[name]
        turns, invalid = count.pop("turns"), count.pop("invalid")
        rows.append({"player": name, "spec": spec, "rating": ratings.get(name, math.nan), **count,
                     "invalid_rate": invalid / turns if turns else 0.0})  # fmt: skip
    return sorted(rows, key=lambda r: math.inf if math.isnan(r["rating"]) else -r["rating"])


def _elo_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("player", "rating", "games", "wins", "draws", "losses", "errors", "invalid rate", "spec"):
        table.add_column(column, justify="left" if column in ("player", "spec") else "right", overflow="fold")
    for row in rows:
        rating = "-" if row["rating"] != row["rating"] else f"{row['rating']:.0f}"  # NaN: no game to rate
        counts = (str(row[k]) for k in ("games", "wins", "draws", "losses", "errors"))
        table.add_row(row["player"], rating, *counts, fmt_metric(row["invalid_rate"]), row["spec"])
    return table


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
