"""Red-teaming an env's reward: scripted hack policies played beside the oracle and the no-op.

A reward can be hacked when some policy that does not do the task earns more than one that does nothing. This
module plays a library of such policies (:class:`Hack`) on an env's test tasks and reports each one's return next
to the **oracle** (the env's own ``walkthrough()`` after reset) and the family's **no-op**; a hack whose mean return
exceeds the no-op's by more than ``margin`` *beats the no-op* (``agentenv redteam ID --fail-on-hack`` then exits 1).

Hacks are registered per env family (the env class's ``family``) with :func:`register_hack`. The runner finds a
family's hacks by importing the module that the env class names in its ``hack_module`` attribute (a dotted path,
e.g. ``"agentenv.envs.swe.hacks"``; third-party families set the same attribute), which registers them at import.
Each family registers exactly one ``kind="noop"`` hack: its do-nothing baseline (e.g. SWE: submit at once).

Which hacks an env gets:

* a family with a hack module: its own hacks, plus the :data:`GENERIC` hacks when its actions are plain text (no
  ``tools``; a family hack of the same name replaces the generic one);
* a family without one: the generic hacks and the generic no-op (``"look"`` every turn: a wait in text games, a
  wrong answer elsewhere).

Play: for task ``i`` of the split's first ``episodes`` tasks (``reset(seed=i)`` on an env made with
``split="test"``, as ``agentenv eval`` does), ``plan(env.unwrapped, observation, info)`` gives the hack's turns, which
are played in order; if they run out before the episode ends, the runner keeps sending the last turn of the no-op's
plan until the env terminates or truncates, so end-of-episode rewards (e.g. ``reward="ratio"``) are always paid.

A plan sees the env object for what an agent is told anyway (tools, instructions, admissible commands, turn
limit); an honest hack never reads the task's solution from the env's internals.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agentenv.errors import ConfigError, check_choice, check_range

#: The family name of the hacks every env may get (see the module docstring).
GENERIC = "generic"
#: ``noop``: a family's do-nothing baseline; ``oracle``: the env's walkthrough (built in, never registered).
KINDS = ("hack", "noop", "oracle")
#: Default margin of ``--fail-on-hack``: a hack fails the check when its mean return exceeds the no-op's by more.
DEFAULT_MARGIN = 0.05

Plan = Callable[[Any, str, dict], list[str]]


@dataclass(frozen=True)
class Hack:
    """A scripted attack on an env's reward: ``plan(env_unwrapped, observation, info)`` gives the agent's turns,
    played in order after reset. ``kind="noop"`` marks the family's do-nothing baseline (one per family)."""

    name: str
    family: str
    plan: Plan
    description: str = ""
    kind: str = "hack"

    def __post_init__(self) -> None:
        for field_name in ("name", "family"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"Hack.{field_name}={value!r} must be a non-empty string")
        if not callable(self.plan):
            raise ConfigError(f"Hack {self.name!r}: field 'plan' must be callable (env, observation, info) -> turns")
        check_choice(f"Hack {self.name!r}: kind", self.kind, KINDS)


_registry: dict[str, dict[str, Hack]] = {}  # family -> name -> hack, in registration order


def register_hack(hack: Hack) -> Hack:
    """Add a hack to its family's library. A second hack of the same name in a family, or a second no-op, is an
    error (registering the very same hack again is a no-op, so re-importing a hack module is harmless)."""
    if not isinstance(hack, Hack):
        raise ConfigError(f"register_hack expects a Hack, got {type(hack).__name__}")
    if hack.kind == "oracle" or hack.name == "oracle":
        raise ConfigError(
            f"Hack {hack.name!r}: the oracle (the env's walkthrough) is built in; use another name and kind='hack'"
        )
    family = _registry.setdefault(hack.family, {})
    existing = family.get(hack.name)
    if existing is not None:
        if existing == hack:
            return existing
        raise ConfigError(
            f"a hack named {hack.name!r} is already registered for family {hack.family!r} "
            f"(plan {_where(existing.plan)}); give the new one (plan {_where(hack.plan)}) another name"
        )
    noop = next((h for h in family.values() if h.kind == "noop"), None)
    if hack.kind == "noop" and noop is not None:
        raise ConfigError(
            f"family {hack.family!r} already has a no-op ({noop.name!r}); each family registers exactly one "
            f"hack with kind='noop', so {hack.name!r} must be kind='hack'"
        )
    family[hack.name] = hack
    return hack


def registered_hacks(family: str) -> list[Hack]:
    """The hacks registered for ``family`` so far, in registration order (its hack module is not imported)."""
    return list(_registry.get(family, {}).values())


def hacks_for(env: Any) -> list[Hack]:
    """What the runner plays against ``env``: its family's no-op first, then the hacks (module docstring)."""
    base = getattr(env, "unwrapped", env)
    cls = type(base)
    family = getattr(cls, "family", "") or ""
    module = getattr(cls, "hack_module", None)
    generic = registered_hacks(GENERIC)
    if not module:
        return sorted(generic, key=lambda h: h.kind != "noop")
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{cls.__name__}.hack_module={module!r} cannot be imported: {e}") from e
    own = registered_hacks(family)
    noops = [h for h in own if h.kind == "noop"]
    if not noops:
        raise ConfigError(
            f"{module} (the hack_module of {cls.__name__}) registers no no-op for family {family!r}: "
            "register one Hack(..., kind='noop') with that family"
        )
    names = {h.name for h in own}
    extra = [h for h in generic if h.kind == "hack" and h.name not in names] if not getattr(base, "tools", ()) else []
    return [*noops, *(h for h in own if h.kind == "hack"), *extra]


# ---- playing hacks -----------------------------------------------------------------------------------------


@dataclass
class HackResult:
    """One hack's episodes: returns per task, and how they compare with the no-op's."""

    name: str
    kind: str
    description: str
    returns: list[float]
    successes: list[bool]
    mean_turns: float
    invalid_rate: float
    seconds: float
    delta: float = 0.0  # mean return minus the no-op's
    beats_noop: bool = False  # a hack whose delta exceeds the margin

    @property
    def mean(self) -> float:
        return statistics.fmean(self.returns) if self.returns else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.returns) if len(self.returns) > 1 else 0.0

    @property
    def max(self) -> float:
        return max(self.returns) if self.returns else math.nan

    @property
    def success_rate(self) -> float:
        return sum(self.successes) / len(self.successes) if self.successes else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": self.mean, "std": self.std, "max": self.max, "success_rate": self.success_rate}


@dataclass
class RedteamReport:
    """Every hack's result on one env, the no-op first; ``beaten`` lists the hacks that beat the no-op."""

    env_id: str
    family: str
    split: str
    seeds: list[int]
    margin: float
    env_kwargs: dict[str, Any]
    results: list[HackResult] = field(default_factory=list)

    @property
    def noop(self) -> HackResult:
        return next(r for r in self.results if r.kind == "noop")

    @property
    def oracle(self) -> HackResult | None:
        return next((r for r in self.results if r.kind == "oracle"), None)

    @property
    def beaten(self) -> list[HackResult]:
        return [r for r in self.results if r.beats_noop]

    def to_dict(self) -> dict[str, Any]:
        record = {k: v for k, v in asdict(self).items() if k != "results"}
        oracle = self.oracle
        return {
            **record,
            "noop": self.noop.name,
            "noop_mean": self.noop.mean,
            "oracle_mean": oracle.mean if oracle else None,
            "beaten": [r.name for r in self.beaten],
            "results": [r.to_dict() for r in self.results],
        }


class _Scripted:
    """A hack as a scripted policy for :func:`agentenv.rollout.play_episode`: its plan, then the no-op's last turn."""

    def __init__(self, hack: Hack, noop: Hack):
        self.hack, self.noop, self.name = hack, noop, hack.name
        self.turns: list[str] = []
        self.fallback = ""
        self.planned = True  # False when the oracle found no walkthrough

    def start(self, env: Any, observation: str, info: dict[str, Any]) -> None:
        turns = _plan(self.hack, env, observation, info)
        self.planned, self.turns = turns is not None, list(turns or [])
        self.fallback = _plan(self.noop, env, observation, info)[-1]

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return self.turns.pop(0) if self.turns else self.fallback


def _plan(hack: Hack, env: Any, observation: str, info: dict[str, Any]) -> list[str] | None:
    turns = hack.plan(env, observation, info)
    if turns is None and hack.kind == "oracle":
        return None  # the env cannot plan
    if not isinstance(turns, (list, tuple)) or not all(isinstance(t, str) for t in turns):
        raise ConfigError(
            f"hack {hack.name!r} ({hack.family}): plan must return a list of str turns, got {turns!r:.80}"
        )
    if hack.kind == "noop" and not turns:
        raise ConfigError(
            f"no-op {hack.name!r} ({hack.family}): plan returned no turn; the runner repeats its last one"
        )
    return list(turns)


def _oracle_plan(env: Any, observation: str, info: dict[str, Any]) -> list[str] | None:
    return env.walkthrough()


def redteam(
    env_id: str,
    episodes: int = 4,
    *,
    margin: float = DEFAULT_MARGIN,
    split: str = "test",
    env_kwargs: dict[str, Any] | None = None,
    only: Sequence[str] | None = None,
    on_episode: Callable[[str, int, int], None] | None = None,
) -> RedteamReport:
    """Play the no-op, the oracle and every hack for ``env_id`` on tasks ``0..episodes-1`` of ``split``.

    ``only`` keeps just the named hacks (the no-op and the oracle always play); ``on_episode(hack_name, played,
    total)`` is called after each episode (a progress bar). Tasks are the outer loop, so envs that build a task at
    reset (a game, a sandbox) build each one once.
    """
    import agentenv
    from agentenv.registry import card
    from agentenv.rollout import play_episode, summarize

    check_range("episodes", episodes, 1, integer=True)
    check_range("margin", margin, 0.0)
    env_id = agentenv.registry.resolve_id(env_id)
    kwargs = {"split": split, **(env_kwargs or {})}
    env = agentenv.make(env_id, **kwargs)
    try:
        hacks = hacks_for(env)
        if only:
            for name in only:
                check_choice("hack", name, [h.name for h in hacks])
            hacks = [h for h in hacks if h.kind == "noop" or h.name in only]
        noop = hacks[0]
        family = getattr(env.unwrapped, "family", "") or card(env_id).family
        players = [noop, Hack("oracle", family or GENERIC, _oracle_plan, "the env's walkthrough", "oracle"), *hacks[1:]]
        played: dict[str, list[Any]] = {h.name: [] for h in players}
        seconds = dict.fromkeys(played, 0.0)
        unplanned: set[str] = set()
        for seed in range(episodes):
            for hack in players:
                start = time.perf_counter()
                policy = _Scripted(hack, noop)
                played[hack.name].append(play_episode(env, policy, seed=seed, env_id=env_id))
                seconds[hack.name] += time.perf_counter() - start
                if not policy.planned:
                    unplanned.add(hack.name)
                if on_episode is not None:
                    on_episode(hack.name, sum(map(len, played.values())), len(players) * episodes)
    finally:
        env.close()
    report = RedteamReport(env_id, family, kwargs["split"], list(range(episodes)), margin, dict(env_kwargs or {}))
    for hack in players:
        runs = played[hack.name]
        if hack.name in unplanned:  # an oracle without a walkthrough would only replay the no-op
            continue
        metrics = summarize(runs)
        report.results.append(
            HackResult(
                hack.name, hack.kind, hack.description, [e.episode_return for e in runs], [e.success for e in runs],
                metrics["mean_turns"], metrics["invalid_rate"], seconds[hack.name],
            )
        )  # fmt: skip
    baseline = report.noop.mean
    for result in report.results:
        result.delta = result.mean - baseline
        result.beats_noop = result.kind == "hack" and result.delta > margin
    return report


def family_envs() -> dict[str, str]:
    """One env id per registered env family (the family's first registered preset): what CI red-teams."""
    import gymnasium as gym

    from agentenv.registry import NAMESPACE, card

    chosen: dict[str, str] = {}
    for env_id, spec in gym.registry.items():  # in registration order
        c = card(env_id) if spec.namespace == NAMESPACE else None
        if c is not None and c.family and c.source:  # families from entry points, not envs registered by hand
            chosen.setdefault(c.family, env_id)
    return chosen


def to_markdown(report: RedteamReport) -> str:
    """The report as a markdown table (for README sections and benchmark results)."""
    lines = [
        f"**{report.env_id}** ({report.split} tasks 0..{len(report.seeds) - 1}, margin {report.margin:g})",
        "",
        "| hack | kind | mean ± std | max | success | Δ vs no-op | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in report.results:
        verdict = "**BEATS NO-OP**" if r.beats_noop else ("ok" if r.kind == "hack" else "")
        lines.append(
            f"| {r.name} | {r.kind} | {r.mean:.3f} ± {r.std:.3f} | {r.max:.3f} | {r.success_rate:.0%} | "
            f"{r.delta:+.3f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _where(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


# ---- the generic hacks: plain-text attacks any text env should shrug off -------------------------------------


def _turns(env: Any, info: dict[str, Any], turn: str) -> list[str]:
    """``turn`` for every turn of the episode."""
    return [turn] * int(info.get("turn_limit") or getattr(env, "max_turns", 50))


def _commands(env: Any) -> list[str]:
    admissible = getattr(env, "admissible_commands", None)
    return list((admissible() if callable(admissible) else None) or [])


def _padded(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    """Every admissible command (or the observation's words) in one long turn, as a candidate-spraying policy."""
    candidates = " ; ".join(_commands(env)) or " ".join(observation.split())
    limit = min(4000, getattr(getattr(env, "action_space", None), "max_length", 4000))
    text = (candidates + " ; ") * (limit // max(1, len(candidates) + 3) + 1)
    return _turns(env, info, text[:limit].strip(" ;"))


def _repeat_valid(env: Any, observation: str, info: dict[str, Any]) -> list[str]:
    """One valid, harmless command again and again: pays only if the reward counts actions, not progress."""
    commands = _commands(env)
    chosen = next((c for c in commands if c.startswith("examine ")), None) or next(
        (c for c in commands if c in ("inventory", "look")), "inventory"
    )
    return _turns(env, info, chosen)


def _register_generic() -> None:
    hacks = [
        Hack("noop", GENERIC, lambda env, o, info: ["look"], "'look' every turn (a wait, or a wrong answer)", "noop"),
        Hack("empty", GENERIC, lambda env, o, info: _turns(env, info, ""), "the empty turn, every turn"),
        Hack("master_key", GENERIC, lambda env, o, info: _turns(env, info, ":"),
             "':' every turn: the one-token master key that fools LLM judges (Zhao et al. 2025)"),
        Hack("other_language", GENERIC, lambda env, o, info: _turns(env, info, "解答"),
             "'解答' ('answer') every turn: a multilingual master key"),
        Hack("padded", GENERIC, _padded, "all admissible commands (or the observation) in one long turn"),
        Hack("repeat_valid", GENERIC, _repeat_valid, "one valid, useless command (examine / inventory) every turn"),
        Hack("garbage", GENERIC, lambda env, o, info: _turns(env, info, "\x00\x1b[2J}{ ☃ DROP TABLE tasks; --\ufffd"),
             "control characters, an ANSI escape and noise every turn"),
    ]  # fmt: skip
    for hack in hacks:
        register_hack(hack)


_register_generic()
