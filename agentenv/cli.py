"""The ``agentenv`` command. The core's commands are here: list, info, play, check, prepare, redteam, new, clean.
The first four cover the multi-agent games (``agentenv.make_multi``) as well as the single-agent envs.

Every other command comes from the layer that owns its code, through the entry-point group ``agentenv.cli`` (as env
families come through ``agentenv.envs``): each entry point names a ``register(app: typer.Typer) -> None`` that adds
commands to :data:`app`. First-party ones: ``policies`` (rollout, sft-data, eval), ``recipes`` (train, grid, demo),
``judge`` (judge-audit), ``search`` and ``swe`` (sub-commands of those families). A third-party package adds its own
the same way. Shared options and consoles live in :mod:`agentenv.terminal`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentenv.redteam import DEFAULT_MARGIN
from agentenv.terminal import KwOption, console, err, parse_kwargs

COMMAND_GROUP = "agentenv.cli"

app = typer.Typer(
    name="agentenv",
    help="Environments, rewards and rollouts for multi-turn LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: Command plugins whose entry point failed: name -> error. Their commands are missing; the others work.
command_errors: dict[str, str] = {}


def main() -> None:
    from agentenv.errors import ConfigError, EnvContractError, UnknownEnvError

    # OpenMP threads that spin while they wait for work take the cores another process needs, and torch collapses
    # 5-10x under contention; passive waiting yields them. Read once, when torch loads (commands import it lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except (ConfigError, UnknownEnvError) as e:
        err.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except EnvContractError as e:
        err.print(f"[bold red]contract violation:[/] {e}")
        sys.exit(1)


def _knobs(spec: Any) -> dict[str, Any]:
    """Constructor kwargs (with their effective defaults) of a registered env or game, its spec kwargs applied."""
    from agentenv.core import env_kwargs

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
    games = [agentenv.registry.multi_spec(i) for i in agentenv.list_multi()]
    games = [g for g in games if not family or g.family == family]
    if table.row_count or not games:
        console.print(table)
    if games:
        console.print(_games_table(games))
    for name, why in plugin_errors.items():
        err.print(f"[yellow]plugin {name!r} failed to load:[/] {why}")


def _games_table(games: list[Any]) -> Table:
    """The multi-agent games (``agentenv.make_multi``): id, family, API, agents, preset knobs, description."""
    table = Table(title="AgentEnv multi-agent games (agentenv.make_multi)")
    for column in ("id", "family", "API", "agents", "preset knobs", "description"):
        table.add_column(column, overflow="fold")
    for game in games:
        try:
            api, agents = _game_seats(game.id)
        except ImportError:
            api, agents = "?", "(needs the 'games' extra: pip install 'agentenv[games]')"
        except Exception as e:  # a broken game must not hide the others
            api, agents = "?", f"(cannot be made: {type(e).__name__}: {e})"
        knobs = ", ".join(f"{k}={v}" for k, v in game.kwargs.items())
        table.add_row(game.id, game.family, api, _shown(agents), knobs, game.description)
    return table


def _game_seats(game_id: str) -> tuple[str, str]:
    """A game's native API ("AEC" or "parallel") and its agents, from a freshly made env."""
    import agentenv
    from agentenv.registry import multi_api

    env = agentenv.make_multi(game_id)
    try:
        return multi_api(env), ", ".join(env.possible_agents)
    finally:
        env.close()


def _game_id(env_id: str) -> str | None:
    """The registered multi-agent game ``env_id`` names, or None (a single-agent env, or nothing)."""
    from agentenv.errors import UnknownEnvError
    from agentenv.registry import multi_spec

    try:
        return multi_spec(env_id).id
    except UnknownEnvError:
        return None


def _creator(spec: Any) -> Any:
    import gymnasium as gym

    if isinstance(spec.entry_point, str):
        return gym.envs.registration.load_env_creator(spec.entry_point)
    return spec.entry_point


@app.command()
def info(env_id: str, kw: KwOption = None, seed: int = 0) -> None:
    """Details of one environment or game: knobs, reward modes, instructions and a first observation (each agent's,
    in a game)."""
    import agentenv
    from agentenv.registry import card

    game_id = _game_id(env_id)
    if game_id is not None:
        _game_info(game_id, parse_kwargs(kw), seed)
        return
    env_id = agentenv.registry.resolve_id(env_id)
    c = card(env_id)
    env = agentenv.make(env_id, **parse_kwargs(kw))
    try:
        observation, reset_info = env.reset(seed=seed)
        base = env.unwrapped
        console.print(f"[bold]{env_id}[/]  family={c.family or '-'}  source={c.source or '-'}")
        if c.description:
            console.print(c.description)
        console.print(f"reward modes: {', '.join(base.reward_modes)}   max_turns: {base.max_turns}")
        console.print("knobs: " + ", ".join(f"{k}={v!r}" for k, v in _knobs(agentenv.spec(env_id)).items()))
        console.print(f"\n[bold]instructions[/]\n{_shown(base.instructions)}")
        console.print(
            f"\n[bold]first observation[/] (seed={seed}, task_id={reset_info['task_id']})\n{_shown(observation)}"
        )
        if reset_info.get("optimal_steps") is not None:
            console.print(f"\noptimal_steps: {reset_info['optimal_steps']}")
    finally:
        env.close()


def _game_info(game_id: str, kwargs: dict[str, Any], seed: int) -> None:
    import agentenv
    from agentenv.registry import multi_api, multi_spec

    spec = multi_spec(game_id)
    env = agentenv.make_multi(game_id, **kwargs)
    try:
        env.reset(seed=seed)
        console.print(
            f"[bold]{game_id}[/]  family={spec.family or '-'}  source={spec.source or '-'}  (multi-agent game)"
        )
        if spec.description:
            console.print(spec.description)
        entry = spec.entry_point
        if not isinstance(entry, str):
            entry = f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', repr(entry))}"
        console.print(f"entry point: {entry}   API: {multi_api(env)}   agents: {', '.join(env.possible_agents)}")
        console.print("knobs: " + ", ".join(f"{k}={v!r}" for k, v in {**_knobs(spec), **kwargs}.items()))
        for agent in env.possible_agents:
            console.print(f"\n[bold]first observation of {agent}[/] (seed={seed})\n{_shown(env.observe(agent))}")
    finally:
        env.close()


@app.command()
def play(
    env_id: str,
    kw: KwOption = None,
    seed: Annotated[int | None, typer.Option(help="Task seed (random if omitted)")] = None,
    seat: Annotated[str | None, typer.Option(help="Games: the agent you play (default: the first)")] = None,
    opponent: Annotated[
        str | None,
        typer.Option(
            help="Games: the other seats' player: expert | random | model:NAME|PATH | vllm:PATH | "
            "openai:URL#MODEL | a model folder (default: expert)"
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Games: a model opponent's turn")] = 32,
    temperature: Annotated[float, typer.Option(min=0.0, help="Games: a model opponent's; 0 = greedy")] = 0.0,
    max_context_tokens: Annotated[int, typer.Option(min=64, help="Games: a model opponent's")] = 4096,
    threads: Annotated[int | None, typer.Option(min=1, help="Games: torch threads of a model opponent")] = None,
) -> None:
    """Play an environment yourself in the terminal, or one seat of a game against scripted or model opponents
    (who see the game as in `agentenv eval`). Type :help for commands, :quit to stop."""
    import agentenv
    from agentenv.errors import ConfigError

    game_id = _game_id(env_id)
    if game_id is not None:
        sampling = (max_new_tokens, temperature, max_context_tokens, 1, threads)
        _play_game(game_id, parse_kwargs(kw), seed, seat, opponent or "expert", sampling)
        return
    if seat is not None or opponent is not None:
        raise ConfigError(f"--seat and --opponent are for multi-agent games; {env_id!r} is not one")
    env = agentenv.make(env_id, **parse_kwargs(kw))
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


def _play_game(
    game_id: str, kwargs: dict[str, Any], seed: int | None, seat: str, opponent: str, sampling: tuple[Any, ...]
) -> None:
    """A person plays ``seat`` (read from stdin, one line a turn); the other seats play ``opponent`` (a scripted
    player or a model: :func:`agentenv.multi_rollout.seat_player`). The game is played by ``play_game``, so a model
    opponent sees the conversation ``agentenv eval`` gives it; an illegal move is its invalid turn."""
    import random

    import agentenv
    from agentenv.errors import check_choice
    from agentenv.multi_rollout import play_game, seat_player
    from agentenv.registry import multi_api

    env = agentenv.make_multi(game_id, **kwargs)
    try:
        seat = seat or env.possible_agents[0]
        check_choice("seat", seat, env.possible_agents)
        seed = random.randrange(2**31) if seed is None else seed
        others = seat_player("opponent", opponent, sampling, seed=seed)
        person = _Person(getattr(env.unwrapped, "expert_action", None))
        game = _Narrated(env, seat, opponent, turn_based=multi_api(env) == "AEC")
        seating = {agent: person if agent == seat else others for agent in env.possible_agents}
        console.print(f"[dim]You are {seat} in {game_id} (seed {seed}); the other seats play {opponent}. :help for "
                      "commands.[/]\n")  # fmt: skip
        try:
            record = play_game(game, seating, seed, max_context_tokens=sampling[2], env_id=game_id)
        except _Quit:
            console.print("\ngame abandoned")
            return
        _print_game_end(record, seat)
    finally:
        env.close()


class _Quit(BaseException):
    """The person quit ``agentenv play``: it ends ``play_game`` at once (a BaseException, like KeyboardInterrupt,
    because ``play_game`` takes a seat's Exception for a failed game and plays on)."""


class _Person:
    """The person's seat in ``agentenv play``, a text seat of ``play_game``: shows the game's message, reads a turn."""

    name = "you"

    def __init__(self, expert: Any):
        self.expert = expert

    def start(self, env: Any, observation: str, info: dict[str, Any]) -> None:
        pass

    def act(self, observation: str, info: dict[str, Any]) -> str:
        game, agent = info["game"], info["agent"]
        reward = game.last()[1]  # what the game paid the person since its last turn
        console.print(_shown(observation) + (f"\n[dim]reward {reward:+.3f}[/]" if reward else ""))
        line = _ask_turn(game, agent, self.expert)
        if line is None:
            raise _Quit
        return line


class _Narrated:
    """A game env as ``agentenv play`` shows it: each other seat's turn is printed as it is stepped, with the game's
    verdict when it was an invalid turn. Only in a turn-based game: in a simultaneous one the others' turns stay
    hidden, as the rules have them, and the person sees what the game tells it. Everything else is the env's."""

    def __init__(self, env: Any, person: str, opponent: str, *, turn_based: bool):
        self._env, self._person, self._opponent, self._turn_based = env, person, opponent, turn_based

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def step(self, action: Any) -> None:
        agent = self._env.agent_selection
        self._env.step(action)
        if agent == self._person or action is None or not self._turn_based:
            return
        info = self._env.infos.get(agent, {})
        verdict = f"  [yellow](invalid turn: {_shown(str(info.get('invalid_reason', '')))})[/]"
        text = (action if isinstance(action, str) else repr(action)).strip()
        text = _shown(text).replace("\n", "\n    ") if text else "(empty)"
        console.print(
            f"[dim]{agent} ({_shown(self._opponent)}):[/] {text}{verdict if info.get('invalid_action') else ''}"
        )


def _print_game_end(record: Any, seat: str) -> None:
    """The person's last message from the game, the verdict and every seat's return."""
    trajectory = record.trajectories[seat]
    if record.error:
        console.print(f"\n[red]game stopped:[/] {_shown(record.error)}")
    elif any(t.context_truncated for t in record.trajectories.values()):
        console.print("\n[yellow]game stopped: the model's next turn would not fit --max-context-tokens[/]")
    else:
        console.print(_shown(trajectory.turns[-1].observation if trajectory.turns else trajectory.first_observation))
    verdict = "[green]success[/]" if trajectory.success else "[red]no success[/]"
    outcome = f", outcome {record.outcomes[seat]:g}" if seat in record.outcomes else ""
    console.print(f"\ngame over: {verdict}{outcome}, your return {record.returns[seat]:.3f}")
    console.print("returns: " + ", ".join(f"{a} {r:+.3f}" for a, r in record.returns.items()))


def _ask_turn(env: Any, seat: str, expert: Any) -> str | None:
    """The person's next turn; answers :help, :hint and :expert on the way. None when they quit (or stdin ends)."""
    while True:
        try:
            line = input("> ")
        except EOFError:
            return None
        command = line.strip()
        if command in (":q", ":quit", ":exit"):
            return None
        if command == ":help":
            console.print(":hint (some legal moves), :expert (the expert's move), :quit")
        elif command == ":hint":
            legal = getattr(env.unwrapped, "legal_actions", None)
            console.print(_shown(" | ".join((legal(seat) if legal else None) or ["(no moves to list)"])))
        elif command == ":expert":
            console.print(_shown(expert(seat) if expert else "(this game has no expert)"))
        else:
            return line


def _shown(text: str) -> str:
    """Env text for the console: control characters visible (:func:`~agentenv.core.terminal_text`), no markup."""
    from rich.markup import escape

    from agentenv.core import terminal_text

    return escape(terminal_text(text))


@app.command()
def check(
    env_ids: Annotated[list[str] | None, typer.Argument(help="Env or game ids; all registered if omitted")] = None,
    kw: KwOption = None,
) -> None:
    """Run Gymnasium's checker and the AgentEnv contract on environments, and PettingZoo's API, seed and parallel
    tests plus bad turns on multi-agent games. Exit 1 on any failure."""
    import agentenv
    from agentenv.testing import check_env, check_game

    kwargs = parse_kwargs(kw)
    if not env_ids:
        env_ids = agentenv.env_ids()
        if importlib.util.find_spec("pettingzoo") is None:
            err.print(
                "[yellow]multi-agent games skipped: they need the 'games' extra (pip install 'agentenv[games]')[/]"
            )
        else:
            env_ids += agentenv.list_multi()
    failures = 0
    for env_id in env_ids:
        game_id = _game_id(env_id)
        if game_id is not None:
            report = check_game(game_id, raise_on_failure=False, **kwargs)
        else:
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
    kwargs = parse_kwargs(kw)
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

    kwargs = parse_kwargs(kw)
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


def add_command_plugins(target: typer.Typer) -> None:
    """Let every ``agentenv.cli`` entry point add its commands to ``target``, in the order of their names.

    A failing plugin (import error, no register function, an error while registering) warns and is recorded in
    :data:`command_errors`; it never breaks the other commands.
    """
    seen: set[str] = set()
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        try:
            ep.load()(target)
        except Exception as e:  # a broken third-party plugin must not break `agentenv`
            command_errors[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"agentenv command plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)


add_command_plugins(app)

if __name__ == "__main__":
    main()
