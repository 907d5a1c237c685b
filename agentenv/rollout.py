"""Episodes of an env played by a policy, as records that can be saved, summarised and trained on.

This module is the one place where turns become training data. :func:`play_episode` records the text turns of a
scripted policy; :func:`rollout` plays batches of episodes with a token-level policy (``generate(prompts) ->
generations``) and returns :class:`Trajectory` records whose token ids are exactly the ids the model saw and
generated: the agent's tokens are never re-encoded, env messages are appended as chat-template deltas
(:class:`~agentenv.chat_format.ChatFormat`), ``loss_mask`` is 1 on agent tokens only, and each turn's reward sits
on that turn's last token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from agentenv.chat_format import ChatFormat
from agentenv.core import TextEnv, terminal_text
from agentenv.errors import ConfigError
from agentenv.policy import EpisodePolicy, Generation, Sampling, TokenPolicy
from agentenv.spaces import ToolCall
from agentenv.tool_calls import format_tool_result


@dataclass
class Turn:
    action: str
    observation: str
    reward: float
    invalid_action: bool
    reward_parts: dict[str, float] = field(default_factory=dict)
    tool_calls: list[str] = field(default_factory=list)  # tools the env ran for this turn: its answer is a tool message


@dataclass
class Episode:
    env_id: str
    policy: str
    seed: int
    task_id: str
    instructions: str
    first_observation: str
    optimal_steps: int | None
    turns: list[Turn] = field(default_factory=list)
    success: bool = False
    terminated: bool = False
    truncated: bool = False

    @property
    def episode_return(self) -> float:
        return sum(t.reward for t in self.turns)

    def messages(self) -> list[dict[str, str]]:
        """The episode as a chat: system = instructions, assistant = agent turns, and the env's messages as ``tool``
        messages where it answered tool calls, else ``user`` messages (the layout the rollout engine trains on)."""
        chat = [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": self.first_observation},
        ]
        for turn in self.turns:
            chat.append({"role": "assistant", "content": turn.action})
            if turn.tool_calls:
                chat.append({"role": "tool", "content": turn.observation, "name": ", ".join(turn.tool_calls)})
            else:
                chat.append({"role": "user", "content": turn.observation})
        return chat[:-1] if self.turns else chat  # the last env message answers no agent turn to learn

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["return"] = self.episode_return
        record["messages"] = self.messages()
        return record


def play_episode(env: gym.Env, policy: EpisodePolicy, seed: int, env_id: str = "") -> Episode:
    """Play one episode of ``env`` from ``reset(seed=seed)``, one turn at a time, with any runner (scripted or model:
    see ``agentenv.policies``). Batches of model episodes, with their tokens, come from :func:`rollout`."""
    observation, info = env.reset(seed=seed)
    base: TextEnv = env.unwrapped  # type: ignore[assignment]
    episode = Episode(
        env_id=env_id or (env.spec.id if env.spec else type(base).__name__),
        policy=getattr(policy, "name", type(policy).__name__),
        seed=seed,
        task_id=info.get("task_id", ""),
        instructions=info.get("instructions", base.instructions),
        first_observation=observation,
        optimal_steps=info.get("optimal_steps"),
    )
    policy.start(base, observation, info)
    while True:
        action = policy.act(observation, info)
        observation, reward, terminated, truncated, info = env.step(action)
        episode.turns.append(
            Turn(
                str(action),
                observation,
                float(reward),
                bool(info.get("invalid_action")),
                info.get("reward_parts", {}),
                tool_names(action, info),
            )
        )
        if terminated or truncated:
            episode.success = bool(info.get("success"))
            episode.terminated, episode.truncated = bool(terminated), bool(truncated)
            return episode


@dataclass
class Trajectory(Episode):
    """An :class:`Episode` with its tokens: what the model saw and generated, aligned position by position."""

    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)  # 1 on agent tokens, 0 on prompt and env tokens
    logprobs: list[float] = field(default_factory=list)  # sampling log-probabilities; 0.0 on non-agent tokens
    turn_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each agent turn
    prompt_length: int = 0  # ids of the opening prompt (system + first env message + generation prompt)
    context_truncated: bool = False  # stopped because the next turn would not fit max_context_tokens
    error: str = ""  # a failed env step or generation ended this episode; the rest of the batch goes on
    prompts: list[list[int]] = field(default_factory=list)  # each turn's prompt, when record_prompts=True

    def add_agent_turn(self, token_ids: list[int], logprobs: Sequence[float] = ()) -> None:
        """Append a generated turn: trained on (loss mask 1), with its sampling log-probs (0.0 if none came)."""
        begin = len(self.token_ids)
        self.token_ids += token_ids
        self.loss_mask += [1] * len(token_ids)
        self.logprobs += list(logprobs) or [0.0] * len(token_ids)
        self.turn_spans.append((begin, len(self.token_ids)))

    def add_context(self, token_ids: list[int]) -> None:
        """Append tokens the agent reads but did not generate (an env message): loss mask 0."""
        self.token_ids += token_ids
        self.loss_mask += [0] * len(token_ids)
        self.logprobs += [0.0] * len(token_ids)

    @property
    def turn_rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    @property
    def reward_positions(self) -> list[int]:
        """Index of the last token of each agent turn: where that turn's reward lands."""
        return [end - 1 for _, end in self.turn_spans]


def rollout(
    envs: list[gym.Env],
    policy: TokenPolicy,
    chat_format: ChatFormat,
    seeds: Iterable[int],
    *,
    sampling: Sampling | None = None,
    max_context_tokens: int = 4096,
    env_id: str = "",
    policy_name: str = "",
    record_prompts: bool = False,
    on_episode: Any = None,
    parse: Callable[[str], Any] | None = None,
    concurrent_env_steps: bool = False,
    overlap: bool = False,
    on_turn: Any = None,
    on_tokens: Any = None,
) -> list[Trajectory]:
    """Play one episode per seed, ``len(envs)`` at a time, batching generation across live episodes.

    ``policy.generate(prompts, sampling)`` takes token-id prompts and returns one :class:`Generation` per prompt
    (any :class:`~agentenv.policy.TokenPolicy`: transformers, OpenAI-compatible, vLLM; only ``generate`` is
    called, and ``policy.sampling``, when there is one, tells how much room a turn needs). An episode
    whose next turn would not fit in ``max_context_tokens`` ends with ``truncated=True`` and
    ``context_truncated=True`` (never silently shortened), its ids ending with its last agent turn so they fit.
    A failing env step or generation ends only that episode, with ``error`` set. ``on_episode(trajectory)`` is
    called as each episode ends (e.g. to advance a progress bar), ``on_turn(trajectory)`` after each turn of an
    episode that goes on (:class:`EpisodeProgress` turns both into a bar that moves turn by turn), and
    ``on_tokens(done, limit)`` during a long generation, by policies that count their tokens as they decode (an
    ``on_tokens`` attribute: :class:`~agentenv.policies.local.TransformersPolicy`). ``parse(text)``
    turns each generated turn into the env's action (e.g. tool calls: :func:`agentenv.policies.tools.parse_turn`);
    the env's answer to a tool call goes back as a ``tool`` message (:func:`~agentenv.tool_calls.format_tool_result`),
    any other answer as a ``user`` one.

    Env steps and resets of a batch run concurrently on envs with ``step_async``/``step_wait`` and
    ``reset_async``/``reset_wait`` (e.g. :class:`agentenv.workers.RayEnv`), and on other envs in threads when
    ``concurrent_env_steps=True``. ``overlap=True`` splits the envs in two halves and pipelines them: one half's env
    steps run (in workers or threads) while the other half generates. Neither changes the order of the result, nor
    an episode's tokens under a deterministic policy (greedy decoding) when the envs are copies of one env; with
    sampling, the draws differ because the generation batches do. The policy is only called from this thread.
    """
    scheduler = RolloutScheduler(
        envs, policy, chat_format, seeds, sampling=sampling, max_context_tokens=max_context_tokens, env_id=env_id,
        policy_name=policy_name, record_prompts=record_prompts, on_episode=on_episode, parse=parse,
        concurrent_env_steps=concurrent_env_steps, overlap=overlap, on_turn=on_turn,
    )  # fmt: skip
    listens = on_tokens is not None and hasattr(policy, "on_tokens")
    before = getattr(policy, "on_tokens", None)
    if listens:
        policy.on_tokens = on_tokens
    try:
        return scheduler.run()
    finally:
        if listens:
            policy.on_tokens = before


class EpisodeProgress:
    """Advances a progress bar counted in episodes as the turns are played, not only as episodes end: each turn of an
    episode adds ``1 / max_turns`` of it (never reaching 1), its end the rest. A batch of episodes that all run to
    the turn limit then moves the bar turn by turn instead of jumping at the end. Pass :meth:`turn` as ``on_turn``,
    :meth:`episode` as ``on_episode`` and :meth:`tokens` as ``on_tokens`` to :func:`rollout`. ``note(text)``, when
    given, shows how far a long generation has come (e.g. in the bar's description), and ``note("")`` once it ends.
    """

    def __init__(self, advance: Callable[[float], Any], max_turns: int, note: Callable[[str], Any] | None = None):
        self.advance, self.share, self.note = advance, 1.0 / max(1, max_turns), note
        self.credited: dict[int, float] = {}
        self.noted = False

    def tokens(self, done: int, limit: int) -> None:
        if self.note is not None:
            self.note(f"generating {done}/{limit} tokens")
            self.noted = True

    def _clear(self) -> None:
        if self.noted and self.note is not None:
            self.note("")
            self.noted = False

    def turn(self, episode: Trajectory) -> None:
        done = self.credited.get(id(episode), 0.0)
        step = min(self.share, (1.0 - done) / 2)  # past the turn limit (budget_factor): ever smaller steps
        self.credited[id(episode)] = done + step
        self._clear()
        self.advance(step)

    def episode(self, episode: Trajectory) -> None:
        self._clear()
        self.advance(1.0 - self.credited.pop(id(episode), 0.0))


Step = tuple[int, Generation, Any, "Callable[[], Any] | str"]  # (env slot, its turn, the action, the env step's wait)


class RolloutScheduler:
    """The loop behind :func:`rollout`: pending seeds go to free env slots (:meth:`fill`), the live episodes of a
    group generate their next turns in one batch and send the env steps (:meth:`play`), and the answers are appended
    when the steps come back (:meth:`collect`). With ``overlap`` the envs form two groups, so that one group's env
    steps run while the other generates. One instance plays one :meth:`run`."""

    def __init__(
        self, envs: list[gym.Env], policy: TokenPolicy, chat_format: ChatFormat, seeds: Iterable[int], *,
        sampling: Sampling | None = None, max_context_tokens: int = 4096, env_id: str = "", policy_name: str = "",
        record_prompts: bool = False, on_episode: Any = None, parse: Callable[[str], Any] | None = None,
        concurrent_env_steps: bool = False, overlap: bool = False, on_turn: Any = None,
    ):  # fmt: skip
        from concurrent.futures import ThreadPoolExecutor

        self.envs, self.policy, self.chat_format, self.sampling = envs, policy, chat_format, sampling
        self.max_context_tokens, self.env_id, self.policy_name = max_context_tokens, env_id, policy_name
        self.record_prompts, self.on_episode, self.on_turn, self.parse = record_prompts, on_episode, on_turn, parse
        self.pending = list(enumerate(seeds))[::-1]  # (position in the result, seed); seeds may repeat (GRPO groups)
        self.free = list(range(len(envs)))[::-1]
        self.live: dict[int, Trajectory] = {}  # env slot -> episode in progress
        self.position: dict[int, int] = {}  # env slot -> where its episode goes in the result
        self.done: dict[int, Trajectory] = {}
        default: Sampling | None = sampling or getattr(policy, "sampling", None)  # a bare generate() may have none
        self.max_new = default.max_new_tokens if default is not None else 0
        calls = ("reset_async", "reset_wait", "step_async", "step_wait")
        self.native = [all(callable(getattr(env, c, None)) for c in calls) for env in envs]
        threaded = (concurrent_env_steps or overlap) and not all(self.native)
        self.threads = ThreadPoolExecutor(max_workers=len(envs), thread_name_prefix="env") if threaded else None
        self.concurrent = threaded or any(self.native)
        half = (len(envs) + 1) // 2
        self.groups = [range(half), range(half, len(envs))] if overlap and len(envs) > 1 else [range(len(envs))]

    def run(self) -> list[Trajectory]:
        """Play every seed; the trajectories in the order of the seeds."""
        in_flight: list[list[Step]] = [[] for _ in self.groups]
        try:
            while self.pending or self.live:
                # with two groups, one's env steps run while the other generates
                for g, group in enumerate(self.groups):
                    self.collect(in_flight[g])
                    in_flight[g] = []
                    self.fill(group)
                    in_flight[g] = self.play(group)
        finally:
            if self.threads is not None:
                self.threads.shutdown(wait=True, cancel_futures=True)
        return [self.done[i] for i in sorted(self.done)]

    def send(self, slot: int, method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        """Start an env call; returns what waits for its result (raising the env's exception)."""
        env = self.envs[slot]
        try:
            if self.native[slot]:
                getattr(env, f"{method}_async")(*args, **kwargs)
                return getattr(env, f"{method}_wait")
            if self.threads is not None:
                return self.threads.submit(getattr(env, method), *args, **kwargs).result
            result = getattr(env, method)(*args, **kwargs)
            return lambda: result
        except Exception as e:
            return _raiser(e)

    def start(self, slot: int, index: int, seed: int, wait: Callable[[], Any]) -> None:
        """Begin the episode whose reset ``wait`` returns, in ``slot``; a failed reset ends it with ``error``."""
        env = self.envs[slot]
        self.position[slot] = index
        name = self.env_id or (env.spec.id if env.spec else type(env.unwrapped).__name__)
        try:
            observation, info = wait()
        except Exception as e:
            self.done[index] = Trajectory(name, self.policy_name, seed, "", "", "", None, error=f"reset failed: {e!r}")
            self.free.append(slot)
            if self.on_episode is not None:
                self.on_episode(self.done[index])
            return
        instructions = info.get("instructions", getattr(env.unwrapped, "instructions", ""))
        messages = [{"role": "system", "content": instructions}, {"role": "user", "content": observation}]
        ids = self.chat_format.start(messages)
        self.live[slot] = Trajectory(
            name, self.policy_name, seed, info.get("task_id", ""), instructions, observation, info.get("optimal_steps"),
            token_ids=ids, loss_mask=[0] * len(ids), logprobs=[0.0] * len(ids), prompt_length=len(ids),
        )  # fmt: skip

    def fill(self, group: range) -> None:
        """Start pending episodes on the group's free envs (their resets concurrently when they can be)."""
        while self.pending:
            slots = [s for s in reversed(self.free) if s in group][: len(self.pending) if self.concurrent else 1]
            if not slots:
                return
            resets = []
            for slot in slots:
                self.free.remove(slot)
                index, seed = self.pending.pop()
                resets.append((slot, index, seed, self.send(slot, "reset", seed=seed)))
            for reset in resets:
                self.start(*reset)

    def finish(self, slot: int) -> None:
        self.done[self.position[slot]] = self.live.pop(slot)
        self.free.append(slot)
        if self.on_episode is not None:
            self.on_episode(self.done[self.position[slot]])

    def end_full_contexts(self, group: range) -> None:
        """End the group's episodes whose next turn would not fit: the last env message is dropped (it trains
        nothing) and the episode is truncated."""
        for slot in [s for s in self.live if s in group]:
            episode = self.live[slot]
            if len(episode.token_ids) + self.max_new > self.max_context_tokens:
                keep = episode.turn_spans[-1][1] if episode.turn_spans else len(episode.token_ids)
                del episode.token_ids[keep:], episode.loss_mask[keep:], episode.logprobs[keep:]
                episode.truncated = episode.context_truncated = True
                self.finish(slot)

    def play(self, group: range) -> list[Step]:
        """Generate the group's next turns and send their env steps; returns what :meth:`collect` takes."""
        self.end_full_contexts(group)
        slots = [s for s in self.live if s in group]
        if not slots:
            return []
        prompts = [list(self.live[s].token_ids) for s in slots]
        try:
            generations = (self.policy.generate(prompts, self.sampling) if self.sampling is not None
                           else self.policy.generate(prompts))  # fmt: skip
        except ConfigError:
            raise  # bad configuration (e.g. a server that cannot return token ids) fails fast, not batch by batch
        except Exception as e:  # a failed generation call fails these episodes, not the run
            for slot in slots:
                self.live[slot].error = f"generation failed: {e!r}"
                self.finish(slot)
            return []
        return [self.take_turn(slot, prompt, generation)
                for slot, prompt, generation in zip(slots, prompts, generations, strict=True)]  # fmt: skip

    def take_turn(self, slot: int, prompt: list[int], generation: Generation) -> Step:
        """Append a generated turn to its episode and send its env step (or the reason it cannot be sent)."""
        episode = self.live[slot]
        if generation.finish_reason == "error":
            return (slot, generation, None, f"generation failed: {generation.error}")
        if self.record_prompts:
            episode.prompts.append(prompt)
        episode.add_agent_turn(generation.token_ids, generation.logprobs)
        try:
            action = self.parse(generation.text) if self.parse is not None else generation.text
        except Exception as e:
            return (slot, generation, None, f"env step failed: {e!r}")
        return (slot, generation, action, self.send(slot, "step", action))

    def collect(self, steps: list[Step]) -> None:
        """Wait for the env steps :meth:`play` sent and append their answers, in the order they were sent."""
        for slot, generation, action, wait in steps:
            episode = self.live[slot]
            if isinstance(wait, str):
                episode.error = wait
                self.finish(slot)
                continue
            try:
                observation, reward, terminated, truncated, info = wait()
            except Exception as e:
                episode.error = f"env step failed: {e!r}"
                self.finish(slot)
                continue
            episode.turns.append(
                Turn(generation.text, observation, float(reward), bool(info.get("invalid_action")),
                     info.get("reward_parts", {}), tool_names(action, info))
            )  # fmt: skip
            if terminated or truncated:
                episode.success = bool(info.get("success"))
                episode.terminated, episode.truncated = bool(terminated), bool(truncated)
                self.finish(slot)
                continue
            message = env_message(observation, action, info)
            episode.add_context(self.chat_format.delta(message, ended=self.chat_format.ended(generation.token_ids)))
            if self.on_turn is not None:
                self.on_turn(episode)


def _raiser(error: Exception) -> Callable[[], Any]:
    """A wait that raises ``error`` (an env call that failed as it was sent)."""

    def wait() -> Any:
        raise error

    return wait


def tool_names(action: Any, info: dict[str, Any]) -> list[str]:
    """The tools the env ran for a turn: the parsed calls' names, or those a :class:`~agentenv.tool_env.ToolEnv`
    read from the turn's text (``info["tool_calls"]``); ``[]`` for text envs and for text turns the env rejected.
    Parsed calls are answered as tool messages even when the env rejected them: the model did call a tool."""
    if isinstance(action, (ToolCall, list)):
        return [c.name for c in ([action] if isinstance(action, ToolCall) else action) if isinstance(c, ToolCall)]
    if info.get("invalid_action"):
        return []
    return [str(n) for n in info.get("tool_calls") or []]


def env_message(observation: str, action: Any, info: dict[str, Any]) -> dict[str, str]:
    """The chat message carrying the env's answer: a ``tool`` message when it ran tool calls, else ``user``."""
    names = tool_names(action, info)
    if isinstance(action, (ToolCall, list)) and names:
        return format_tool_result(observation, action)
    if names:
        return {"role": "tool", "content": observation, "name": ", ".join(names)}
    return {"role": "user", "content": observation}


def summarize(episodes: Iterable[Episode]) -> dict[str, float]:
    """The standard metrics: success rate with its 95% Wilson interval, mean return and turns, invalid-turn,
    truncation and error rates, turns over optimal (solved episodes only), and the mean of each reward part."""
    episodes = list(episodes)
    if not episodes:
        return {"episodes": 0}
    n = len(episodes)
    turns = [len(e.turns) for e in episodes]
    invalid = sum(t.invalid_action for e in episodes for t in e.turns)
    solved = [len(e.turns) / e.optimal_steps for e in episodes if e.success and e.optimal_steps]
    successes = sum(e.success for e in episodes)
    low, high = wilson_interval(successes, n)
    parts: dict[str, float] = {}
    for e in episodes:
        for t in e.turns:
            for name, value in t.reward_parts.items():
                parts[name] = parts.get(name, 0.0) + value
    return {
        "episodes": n,
        "success_rate": successes / n,
        "success_ci_low": low,
        "success_ci_high": high,
        "mean_return": sum(e.episode_return for e in episodes) / n,
        "mean_turns": sum(turns) / n,
        "invalid_rate": invalid / max(1, sum(turns)),
        "truncation_rate": sum(e.truncated for e in episodes) / n,
        "error_rate": sum(bool(getattr(e, "error", "")) for e in episodes) / n,
        "turns_over_optimal": sum(solved) / len(solved) if solved else math.nan,
        **{f"reward_parts.{name}": total / n for name, total in sorted(parts.items())},
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a success rate (95% for z=1.96); sane at 0 and n successes."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, z: float = 1.96
) -> tuple[float, float, float]:
    """``(a - b, low, high)``: the difference of two independent success rates with a 95% (z=1.96) Agresti-Caffo
    interval (a Wald interval after adding one success and one failure to each side, so that 0/n and n/n keep a
    width). A rise is significant at 5% when ``low > 0``; two disjoint Wilson intervals ask for far more."""
    pa, pb = (successes_a + 1) / (n_a + 2), (successes_b + 1) / (n_b + 2)
    half = z * math.sqrt(pa * (1 - pa) / (n_a + 2) + pb * (1 - pb) / (n_b + 2))
    diff = (successes_a / n_a if n_a else math.nan) - (successes_b / n_b if n_b else math.nan)
    return diff, diff - half, diff + half


def paired_difference_interval(
    after: Sequence[bool], before: Sequence[bool], z: float = 1.96
) -> dict[str, float | int]:
    """The difference of two success rates measured on the *same* tasks (task ``i`` of ``after`` and of ``before``
    is one game seed and seat, or one test task), which only the discordant pairs decide: ``gained`` (failed
    before, solved after) and ``lost`` (the reverse).

    Returns ``difference`` (``(gained - lost) / n``), its 95% Agresti-Min interval ``low``/``high`` (a Wald interval
    after adding 0.5 to each of the four cells) and McNemar's exact two-sided ``p`` (a binomial test of ``gained``
    among the discordant pairs). Where most tasks end alike before and after, this resolves a rise that
    :func:`difference_interval`, which treats the two samples as independent, cannot.
    """
    if len(after) != len(before):
        raise ValueError(f"paired samples differ in length: {len(after)} after, {len(before)} before")
    n = len(after)
    gained = sum(1 for a, b in zip(after, before, strict=True) if a and not b)
    lost = sum(1 for a, b in zip(after, before, strict=True) if b and not a)
    p_gained, p_lost = (gained + 0.5) / (n + 2), (lost + 0.5) / (n + 2)
    centre = p_gained - p_lost
    half = z * math.sqrt(max(0.0, p_gained + p_lost - centre**2) / (n + 2))
    discordant = gained + lost
    tail = sum(math.comb(discordant, k) for k in range(min(gained, lost) + 1)) / 2**discordant
    return {"n": n, "gained": gained, "lost": lost, "difference": (gained - lost) / n if n else math.nan,
            "low": centre - half, "high": centre + half, "p": min(1.0, 2 * tail)}  # fmt: skip


def paired_by_task(after: Mapping[Any, bool], before: Mapping[Any, bool]) -> dict[str, float | int] | None:
    """:func:`paired_difference_interval` over the tasks both ``after`` and ``before`` (task -> solved) hold, in
    sorted order; None when they share none."""
    tasks = sorted(set(after) & set(before))
    return paired_difference_interval([after[t] for t in tasks], [before[t] for t in tasks]) if tasks else None


def write_html(episodes: Iterable[Episode], path: str | Path, title: str = "AgentEnv episodes") -> int:
    """A self-contained HTML page to read episodes turn by turn; returns how many it holds.

    Env and agent text is shown as written, control characters as visible escapes (``\\x1b``).
    """
    from html import escape as html_escape

    def escape(text: str) -> str:
        return html_escape(terminal_text(text))

    rows = []
    episodes = list(episodes)
    for e in episodes:
        verdict = "solved" if e.success else ("error: " + e.error if getattr(e, "error", "") else "not solved")
        turns = "".join(
            f"<div class=a>&gt; {escape(t.action)}</div><div class='o{' bad' if t.invalid_action else ''}'>"
            f"{escape(t.observation)}<span class=r>reward {t.reward:+.3f}</span></div>"
            for t in e.turns
        )
        rows.append(
            f"<details><summary>{escape(e.task_id or str(e.seed))} — {escape(verdict)}, {len(e.turns)} turns, "
            f"return {e.episode_return:.3f}</summary><div class=s>{escape(e.instructions)}</div>"
            f"<div class=o>{escape(e.first_observation)}</div>{turns}</details>"
        )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}details{border-bottom:1px solid #ccc;padding:.3em}"
        ".s,.o,.a{white-space:pre-wrap;margin:.3em 0}.s{color:#666}.a{font-weight:bold}.bad{color:#a33}"
        ".r{float:right;color:#36a;font-size:.8em}"
    )
    page = f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title><style>{style}</style>"
    page += f"<h1>{escape(title)}</h1>{''.join(rows)}"
    Path(path).write_text(page, encoding="utf-8")
    return len(episodes)


def write_jsonl(episodes: Iterable[Episode], path: str | Path, *, sft: bool = False) -> int:
    """Write episodes to JSONL, one per line (full records, or SFT chats with ``sft=True``); returns how many.

    Writes a temporary file and renames it, so an interrupted run never leaves a truncated file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for episode in episodes:
            record = sft_record(episode) if sft else episode.to_json()
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def sft_record(episode: Episode) -> dict[str, Any]:
    """One SFT example: the chat (system, user, assistant, ...) plus where it came from."""
    return {
        "messages": episode.messages(),
        "env_id": episode.env_id,
        "task_id": episode.task_id,
        "policy": episode.policy,
        "success": episode.success,
        "return": episode.episode_return,
    }


def load_sft_dataset(path: str | Path) -> Any:
    """A ``datasets.Dataset`` of the SFT JSONL written by ``agentenv sft-data`` (needs the ``datasets`` package)."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError("load_sft_dataset needs the 'train' extra: pip install 'agentenv[train]'") from e
    return datasets.Dataset.from_json(str(path))


def read_jsonl(path: str | Path) -> Iterator[Episode]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            turns = [Turn(**t) for t in record.pop("turns")]
            for derived in ("return", "messages"):
                record.pop(derived, None)
            yield Episode(**record, turns=turns)
