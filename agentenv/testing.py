"""The AgentEnv contract as a runnable check, for our envs and for plugin authors' own tests.

>>> from agentenv.testing import check_env, check_game
>>> report = check_env("AgentEnv/KeyDoor-s3k1d2-v0")   # raises EnvContractError listing every failure
>>> report = check_game("AgentEnv/Nim-v0")             # a multi-agent game: PettingZoo's tests and bad turns
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence

from agentenv.core import _UNPRINTABLE, TextEnv
from agentenv.errors import ConfigError, EnvContractError, check_choice
from agentenv.registry import make, make_multi, multi_api, multi_spec, resolve_id
from agentenv.spaces import TextSpace

#: Turns no env may crash on; each must come back as an invalid turn.
BAD_ACTIONS: dict[str, Any] = {
    "empty": "",
    "whitespace": "   \n\t ",
    "huge": "go north " * 100_000,
    "NUL bytes": "go\x00north",
    "ANSI escapes": "\x1b[31mgo north\x1b[0m",
    "invalid UTF-8 (bytes)": b"go \xff\xfe north",
    "invalid UTF-8 (lone surrogate)": "go \udcff north",
    "wrong type (int)": 42,
    "wrong type (None)": None,
    "wrong type (dict)": {"not": "a tool call"},
    "deeply nested list": functools.reduce(lambda inner, _: [inner], range(100_000), []),
}
#: A turn that command games (``multiline_actions`` false, no tools) must refuse: two commands on two lines.
MULTI_LINE_TURN = "look\ngo north"
#: ``reset`` arguments that must raise :class:`~agentenv.errors.ConfigError`.
BAD_SEEDS: tuple[Any, ...] = (True, -1, 2**63, 1.5, "0")
BAD_OPTIONS: tuple[Any, ...] = (["task_id"], {"no_such_option": 1})


@dataclass
class CheckReport:
    env_id: str
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def run(self, name: str, check: Callable[[], str | None]) -> None:
        """Run one check: an exception is its failure, a returned string a note. One broken check must not hide
        the rest."""
        try:
            note = check()
        except Exception as e:
            self.failed[name] = f"{type(e).__name__}: {e}"
        else:
            self.passed.append(name)
            if note:
                self.notes.append(f"{name}: {note}")

    def raise_on_failure(self) -> None:
        if self.failed:
            lines = "\n".join(f"  - {name}: {why}" for name, why in self.failed.items())
            raise EnvContractError(f"{self.env_id} fails {len(self.failed)} contract check(s):\n{lines}")


def check_env(
    env_id: str,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    max_steps: int = 200,
    raise_on_failure: bool = True,
    **kwargs: Any,
) -> CheckReport:
    """Run Gymnasium's ``check_env`` plus the AgentEnv contract on a registered env (made with ``kwargs``).

    Checks: Gymnasium's checker (no warnings allowed); text spaces and the documented info keys; same seed ->
    same episode; each of :data:`BAD_ACTIONS` (and :data:`MULTI_LINE_TURN` in a command game) is an invalid turn,
    never an exception; :data:`BAD_SEEDS` and :data:`BAD_OPTIONS` make ``reset`` raise ConfigError; rewards finite;
    the turn limit truncates; the walkthrough (when the env has one) solves the task in ``optimal_steps``; render
    shows control characters escaped; close() twice; the spec pickles and remakes the same env; ``make_vec`` (sync)
    steps text.
    """
    env_id = resolve_id(env_id)
    report = CheckReport(env_id)
    run = report.run

    def new_env(**extra: Any) -> gym.Env:
        return make(env_id, **{**kwargs, **extra})

    run("gymnasium check_env", lambda: _gymnasium_checker(new_env))
    run("text spaces and info keys", lambda: _spaces_and_info(new_env, seeds[0]))
    run("same seed, same episode", lambda: _determinism(new_env, seeds, max_steps))
    run("bad actions are invalid turns", lambda: _bad_actions(new_env, seeds[0]))
    run("bad seeds and options are ConfigErrors", lambda: _bad_resets(new_env))
    run("rewards finite, episode ends", lambda: _random_episodes(new_env, seeds, max_steps))
    run("max_turns truncates", lambda: _turn_limit(new_env, seeds[0]))
    run("walkthrough solves the task", lambda: _walkthrough(new_env, seeds))
    run("render ansi", lambda: _render(new_env, seeds[0]))
    run("close() is idempotent", lambda: _close_twice(new_env))
    run("spec pickles and remakes", lambda: _spec_pickle(new_env, seeds[0]))
    run("make_vec (sync)", lambda: _vector(env_id, kwargs, seeds[0]))

    if raise_on_failure:
        report.raise_on_failure()
    return report


def _gymnasium_checker(new_env: Callable[..., gym.Env]) -> None:
    env = new_env()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gym_check_env(env.unwrapped)
        messages = sorted({str(w.message) for w in caught})
        if messages:
            raise AssertionError("gymnasium's checker warned: " + " | ".join(messages))
    finally:
        env.close()


def _spaces_and_info(new_env: Callable[..., gym.Env], seed: int) -> None:
    env = new_env()
    try:
        base = env.unwrapped
        assert isinstance(base, TextEnv), f"the env must subclass agentenv.TextEnv, got {type(base).__name__}"
        assert isinstance(env.observation_space, TextSpace), "observation_space must be a TextSpace"
        assert isinstance(env.action_space, TextSpace), "action_space must be a TextSpace (or ActionSpace)"
        assert isinstance(base.instructions, str) and base.instructions.strip(), "instructions must be a non-empty str"
        observation, info = env.reset(seed=seed)
        assert isinstance(observation, str) and observation.strip(), "reset() must return a non-empty str"
        assert isinstance(info.get("task_id"), str) and info["task_id"], "reset info['task_id'] must be a str"
        assert isinstance(info.get("tools"), list), "reset info['tools'] must be a list of JSON schemas"
        steps = info.get("optimal_steps")
        assert steps is None or (isinstance(steps, int) and steps >= 0), "info['optimal_steps']: int >= 0 or None"
        replay, _ = env.reset(options={"task_id": info["task_id"]})
        assert replay == observation, "reset(options={'task_id': ...}) must replay the task"
        _, reward, _, _, info = env.step(_some_action(base))
        assert isinstance(info.get("success"), bool), "step info['success'] must be a bool"
        assert isinstance(info.get("invalid_action"), bool), "step info['invalid_action'] must be a bool"
        parts = info.get("reward_parts")
        assert isinstance(parts, dict) and all(isinstance(k, str) and _finite(v) for k, v in parts.items()), (
            "step info['reward_parts'] must map names to finite numbers"
        )
        assert math.isclose(sum(parts.values()), reward, abs_tol=1e-6), (
            f"reward_parts {parts} must sum to the reward {reward}"
        )
    finally:
        env.close()


def _determinism(new_env: Callable[..., gym.Env], seeds: tuple[int, ...], max_steps: int) -> None:
    for seed in seeds:
        a, b = new_env(), new_env()
        try:
            first = _episode(a, seed, max_steps)
            second = _episode(b, seed, max_steps)
            assert data_equivalence(first, second, exact=True), f"two runs with seed={seed} differ"
        finally:
            a.close()
            b.close()


def _bad_actions(new_env: Callable[..., gym.Env], seed: int) -> None:
    env = new_env()
    try:
        for name, action in BAD_ACTIONS.items():
            env.reset(seed=seed)
            try:
                observation, reward, _, _, info = env.step(action)
            except Exception as e:
                raise AssertionError(f"{name}: step raised {type(e).__name__}: {e}") from e
            assert info.get("invalid_action") is True, f"{name}: info['invalid_action'] is not True"
            assert _finite(reward), f"{name}: reward {reward!r} is not finite"
            assert observation in env.observation_space, f"{name}: observation is outside the observation space"
        base = env.unwrapped
        if not (base.multiline_actions or base.tools):
            env.reset(seed=seed)
            info = env.step(MULTI_LINE_TURN)[4]
            assert info.get("invalid_action") is True, "a command game must refuse a turn of several lines"
    finally:
        env.close()


def _bad_resets(new_env: Callable[..., gym.Env]) -> None:
    env = new_env()
    try:
        for kwargs in [{"seed": s} for s in BAD_SEEDS] + [{"options": o} for o in BAD_OPTIONS]:
            try:
                env.reset(**kwargs)
            except ConfigError:
                continue
            raise AssertionError(f"reset({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) must raise ConfigError")
    finally:
        env.close()


def _random_episodes(new_env: Callable[..., gym.Env], seeds: tuple[int, ...], max_steps: int) -> str:
    env = new_env()
    lengths = []
    try:
        limit = env.unwrapped.max_turns
        for seed in seeds:
            steps = _episode(env, seed, max_steps, policy="random")[1:]
            assert all(_finite(r) for _, r, *_ in steps), f"seed={seed}: a reward is not finite"
            *_, (_, _, terminated, truncated, _) = steps
            if len(steps) < max_steps:
                assert terminated or truncated, f"seed={seed}: episode neither terminated nor truncated"
            assert len(steps) <= limit, f"seed={seed}: episode ran {len(steps)} turns past max_turns={limit}"
            lengths.append(len(steps))
    finally:
        env.close()
    return f"random-policy episode lengths {lengths}"


def _turn_limit(new_env: Callable[..., gym.Env], seed: int) -> None:
    env = new_env(max_turns=2)
    try:
        env.reset(seed=seed)
        _, _, terminated, truncated, _ = env.step("this is not a command")
        assert not truncated, "truncated after 1 of 2 turns"
        if not terminated:
            _, _, terminated, truncated, _ = env.step("this is not a command")
            assert truncated and not terminated, "turn 2 of max_turns=2 must truncate (truncated=True)"
    finally:
        env.close()


def _walkthrough(new_env: Callable[..., gym.Env], seeds: tuple[int, ...]) -> str | None:
    env = new_env()
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            plan = env.unwrapped.walkthrough()
            if plan is None:
                return "the env has no walkthrough (skipped)"
            if info.get("optimal_steps") is not None:
                assert len(plan) == info["optimal_steps"], (
                    f"seed={seed}: walkthrough has {len(plan)} steps, optimal_steps={info['optimal_steps']}"
                )
            terminated = truncated = False
            for action in plan:
                _, _, terminated, truncated, info = env.step(action)
                assert not info["invalid_action"], f"seed={seed}: walkthrough action {action!r} was invalid"
                if terminated or truncated:
                    break
            assert terminated and info["success"], f"seed={seed}: the walkthrough did not solve the task"
    finally:
        env.close()
    return None


def _render(new_env: Callable[..., gym.Env], seed: int) -> None:
    env = new_env(render_mode="ansi")
    try:
        env.reset(seed=seed)
        done = False
        for action in (None, _some_action(env.unwrapped), "\x1b[2J\x00"):
            if action is not None:
                if done:  # a one-turn env (a judge) or a quick game ended on the previous action
                    env.reset(seed=seed)
                *_, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
            text = env.render()
            assert isinstance(text, str), "render() in 'ansi' mode must return a str"
            assert not _UNPRINTABLE.search(text), "render() must show control characters escaped (terminal_text)"
    finally:
        env.close()


def _close_twice(new_env: Callable[..., gym.Env]) -> None:
    env = new_env()
    env.reset(seed=0)
    env.close()
    env.close()


def _spec_pickle(new_env: Callable[..., gym.Env], seed: int) -> None:
    env = new_env()
    try:
        spec = pickle.loads(pickle.dumps(env.spec))
        assert spec == env.spec, "the unpickled spec differs from the original"
        again = gym.make(spec)
        try:
            assert again.reset(seed=seed)[0] == env.reset(seed=seed)[0], "the remade env starts differently"
        finally:
            again.close()
    finally:
        env.close()


def _vector(env_id: str, kwargs: dict[str, Any], seed: int) -> None:
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", **kwargs)
    try:
        observations, _ = envs.reset(seed=seed)
        assert len(observations) == 2 and all(isinstance(o, str) for o in observations), "batched reset"
        observations, rewards, *_ = envs.step(("look", "inventory"))
        assert len(observations) == 2 and all(isinstance(o, str) for o in observations), "batched step"
        assert all(_finite(r) for r in rewards), "batched rewards must be finite"
    finally:
        envs.close()


def _episode(env: gym.Env, seed: int, max_steps: int, policy: str = "walkthrough+random") -> list[tuple]:
    """Play one episode with a seeded policy (half the walkthrough if any, then admissible/random commands).

    Returns the reset ``(observation, 0.0, False, False, info)`` followed by every step's 5-tuple.
    """
    observation, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    base = env.unwrapped
    plan = (base.walkthrough() or []) if policy.startswith("walkthrough") else []
    steps: list[tuple] = [(observation, 0.0, False, False, info)]
    for t in range(max_steps):
        action = plan[t] if t < len(plan) // 2 else _some_action(base, env.action_space.np_random)
        observation, reward, terminated, truncated, info = env.step(action)
        steps.append((observation, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return steps


def _some_action(base: Any, rng: Any = None) -> str:
    """An admissible command when the env lists them (the first, or a random one given ``rng``); otherwise a
    fixed probe word, or a sample from the (seeded) action space when ``rng`` is given."""
    commands = base.admissible_commands()
    if commands:
        return commands[0] if rng is None else commands[int(rng.integers(len(commands)))]
    return "hello" if rng is None else base.action_space.sample()


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ---- multi-agent games (PettingZoo) -------------------------------------------------------------------------------
#: PettingZoo's tests advise NumPy observations and Box/Discrete spaces: text games break that advice by design.
ARRAY_ADVICE = re.compile(r"Observation is not a NumPy array|space for each agent probably should be gymnasium")
#: The scripted players every game offers: its ``expert_action``, or a random move of its ``legal_actions``.
SCRIPTED_PLAYERS = ("expert", "random")


def check_game(
    game_id: str,
    *,
    seed: int = 0,
    num_cycles: int = 100,
    max_steps: int = 1000,
    raise_on_failure: bool = True,
    **kwargs: Any,
) -> CheckReport:
    """Run PettingZoo's own tests plus the AgentEnv game contract on a registered multi-agent game (made with
    ``kwargs``).

    Checks: PettingZoo's ``api_test`` and ``seed_test`` (and ``parallel_api_test`` and ``parallel_seed_test`` for a
    simultaneous game), with their advice for array envs silenced and any other warning noted; each of
    :data:`BAD_ACTIONS` is an invalid turn for the agent that took it (``info['invalid_action']``, a finite reward,
    an observation in its space), never an exception, and a game of nothing but bad turns plays on or ends by its
    rules; unknown knobs and :data:`BAD_SEEDS` are ConfigErrors; render shows control characters escaped; the
    scripted players (``expert_action`` against ``legal_actions``), when the game has them, play valid turns to the
    end in either seat, and every agent's last info says its ``success``.
    """
    try:
        from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test
    except ImportError as e:
        raise ImportError(
            f"Checking games needs the 'games' extra ({e.name} is missing): pip install 'agentenv[games]'"
        ) from e

    game_id = multi_spec(game_id).id
    report = CheckReport(game_id)
    run = report.run

    def new_env(**extra: Any) -> Any:
        return make_multi(game_id, **{**kwargs, **extra})

    run("make_multi", lambda: new_env().close())
    if report.failed:
        if raise_on_failure:
            report.raise_on_failure()
        return report
    parallel = multi_api(new_env()) == "parallel"
    run("pettingzoo api_test", lambda: _quietly(api_test, new_env(), num_cycles=num_cycles))
    run("pettingzoo seed_test", lambda: _quietly(seed_test, new_env, num_cycles=num_cycles))
    if parallel:
        new_parallel = functools.partial(new_env, parallel=True)
        run("pettingzoo parallel_api_test", lambda: _quietly(parallel_api_test, new_parallel(), num_cycles=num_cycles))
        run("pettingzoo parallel_seed_test", lambda: _quietly(parallel_seed_test, new_parallel, num_cycles=num_cycles))
    run("bad turns are invalid turns", lambda: _bad_turns(new_env, seed, parallel))
    run("a game of bad turns never crashes", lambda: _game_of_bad_turns(new_env, seed, max_steps))
    run("bad knobs and seeds are ConfigErrors", lambda: _bad_game_config(new_env))
    run("render ansi", lambda: _game_render(new_env, seed))
    run("scripted players finish the game", lambda: _scripted_games(new_env, seed, max_steps))

    if raise_on_failure:
        report.raise_on_failure()
    return report


def scripted_player(env: Any, kind: str, seed: int | None = None) -> Callable[[str], str]:
    """A scripted player of a game, agent -> its turn now: ``"expert"`` plays ``env.expert_action(agent)`` (the
    game's optimal or reference strategy), ``"random"`` a uniformly random (seeded) move of
    ``env.legal_actions(agent)``, or the expert's when that list is empty."""
    check_choice("kind", kind, SCRIPTED_PLAYERS)
    base = env.unwrapped
    missing = [name for name in ("expert_action", "legal_actions") if not callable(getattr(base, name, None))]
    if missing:
        raise ConfigError(f"{type(base).__name__} has no {' or '.join(missing)}, so it has no scripted players")
    if kind == "expert":
        return base.expert_action
    rng = np.random.default_rng(seed)

    def random_turn(agent: str) -> str:
        moves = base.legal_actions(agent)
        return moves[int(rng.integers(len(moves)))] if moves else base.expert_action(agent)

    return random_turn


def _quietly(test: Callable[..., None], *args: Any, **kwargs: Any) -> str | None:
    """Run one of PettingZoo's tests without its progress prints or its advice for array envs; other warnings come
    back as a note."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        test(*args, **kwargs)
    others = sorted({str(w.message) for w in caught if not ARRAY_ADVICE.search(str(w.message))})
    return "PettingZoo warned: " + " | ".join(others) if others else None


def _bad_turns(new_env: Callable[..., Any], seed: int, parallel: bool) -> None:
    env = new_env(parallel=parallel)
    try:
        for name, action in BAD_ACTIONS.items():
            env.reset(seed=seed)
            try:
                if parallel:  # every agent takes the bad turn at once
                    agents = list(env.agents)
                    observations, rewards, _, _, infos = env.step(dict.fromkeys(agents, action))
                    seen = [(a, observations[a], rewards[a], infos[a]) for a in agents]
                else:
                    agent = env.agent_selection
                    env.step(action)
                    seen = [(agent, env.observe(agent), env.rewards[agent], env.infos[agent])]
            except Exception as e:
                raise AssertionError(f"{name}: step raised {type(e).__name__}: {e}") from e
            for agent, observation, reward, info in seen:
                assert info.get("invalid_action") is True, f"{name}: {agent}'s info['invalid_action'] is not True"
                assert _finite(reward), f"{name}: {agent}'s reward {reward!r} is not finite"
                assert observation in env.observation_space(agent), (
                    f"{name}: {agent}'s observation is outside its space"
                )
    finally:
        env.close()


def _game_of_bad_turns(new_env: Callable[..., Any], seed: int, max_steps: int) -> str:
    env = new_env()
    turns = list(BAD_ACTIONS.values())
    steps = 0
    try:
        env.reset(seed=seed)
        for steps, agent in enumerate(env.agent_iter(max_steps), 1):
            _, reward, terminated, truncated, _ = env.last()
            assert _finite(reward), f"step {steps}: {agent}'s reward {reward!r} is not finite"
            env.step(None if terminated or truncated else turns[steps % len(turns)])
        ended = not env.agents
    finally:
        env.close()
    return f"ended after {steps} steps" if ended else f"still on after {steps} steps (the game's rules allow it)"


def _bad_game_config(new_env: Callable[..., Any]) -> None:
    try:
        new_env(no_such_knob=1)
    except ConfigError:
        pass
    else:
        raise AssertionError("make_multi(..., no_such_knob=1) must raise ConfigError")
    env = new_env()
    try:
        for seed in BAD_SEEDS:
            try:
                env.reset(seed=seed)
            except ConfigError:
                continue
            raise AssertionError(f"reset(seed={seed!r}) must raise ConfigError")
    finally:
        env.close()


def _game_render(new_env: Callable[..., Any], seed: int) -> None:
    env = new_env(render_mode="ansi")
    try:
        env.reset(seed=seed)
        for _ in env.agent_iter(4):
            _, _, terminated, truncated, _ = env.last()
            text = env.render()
            assert isinstance(text, str), "render() in 'ansi' mode must return a str"
            assert not _UNPRINTABLE.search(text), "render() must show control characters escaped (terminal_text)"
            env.step(None if terminated or truncated else "\x1b[2J\x00 hello\x07")
    finally:
        env.close()


def _scripted_games(new_env: Callable[..., Any], seed: int, max_steps: int) -> str | None:
    env = new_env()
    try:
        if not all(callable(getattr(env.unwrapped, m, None)) for m in ("expert_action", "legal_actions")):
            return "the game has no expert_action and legal_actions (skipped)"
        for expert_seat in range(len(env.possible_agents)):
            env.reset(seed=seed + expert_seat)
            players = {
                agent: scripted_player(env, "expert" if i == expert_seat else "random", seed)
                for i, agent in enumerate(env.possible_agents)
            }
            for agent in env.agent_iter(max_steps):
                _, _, terminated, truncated, info = env.last()
                assert not info.get("invalid_action"), (
                    f"{agent}'s scripted turn was invalid: {info.get('invalid_reason')}"
                )
                if terminated or truncated:
                    assert isinstance(info.get("success"), bool), f"{agent}'s last info['success'] must be a bool"
                env.step(None if terminated or truncated else players[agent](agent))
            assert not env.agents, f"expert in seat {expert_seat} vs random: no end after {max_steps} steps"
    finally:
        env.close()
    return None
