"""Multi-agent games played by policies, as one token-exact :class:`~agentenv.rollout.Trajectory` per agent, and
their evaluation: win / draw / loss rates with Wilson intervals, and Elo-scale ratings.

A game is any PettingZoo AEC env (``agentenv.make_multi``, whose simultaneous games are AEC through
``parallel_to_aec``). :func:`play_games` follows ``env.agent_iter()``: each agent reads its own observations as its
own conversation, so its trajectory has the layout of a single-agent one (system + first observation, then its
generated turns with ``loss_mask`` 1 and their log-probabilities, and the game's next message to it as a
chat-template delta with ``loss_mask`` 0) and trainers consume it unchanged. A turn's reward is everything PettingZoo
gave the agent from that turn until it next acts (its own step, the others' moves, the end of the game); rewards
before an agent's first turn go to its first turn. Illegal moves are the game's invalid turns (``invalid_action``,
the game's penalty).

Seats map agents to policies: one :class:`~agentenv.policy.TokenPolicy` object on every seat is self-play, two model
policies are a policy against a frozen snapshot, and :class:`ScriptedSeat` is the game's expert or random player.
Model seats of all live games generate in one batch per policy object, whichever seat and game they are in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.policy import Generation, Sampling
from agentenv.rollout import Trajectory, Turn, wilson_interval

#: The system message of every seat's conversation (``{agent}`` is the seat), unless the game's info has
#: ``instructions``: the game's own rules come in the first observation.
DEFAULT_INSTRUCTIONS = (
    "You are {agent}, a player in a multi-agent text game. Each message tells you what happened since your last "
    "turn and what you may do; answer with your turn only."
)


@dataclass
class GameRecord:
    """One played game: a trajectory per agent, and what the game paid each agent.

    ``returns`` sums every reward PettingZoo gave an agent; it equals the sum of the agent's turn rewards except for
    an agent that never acted (the game ended before its first turn), whose trajectory has no turn to carry them.
    ``outcomes`` is each agent's ``info["outcome"]`` at the end (the game's payoff), where the game gave one.
    """

    env_id: str
    seed: int
    seats: dict[str, str]  # agent -> the name of the policy on that seat
    trajectories: dict[str, Trajectory] = field(default_factory=dict)
    returns: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False  # the game's turn limit, the context budget, or an error stopped it
    error: str = ""

    def outcome(self, agent: str) -> float:
        """The agent's payoff: its ``outcome`` when the game gave one, else its return."""
        return self.outcomes.get(agent, self.returns.get(agent, 0.0))

    def score(self, agent: str) -> float:
        """1 (win), 0.5 (draw) or 0 (loss): the agent's outcome against the best of the other agents'."""
        others = [self.outcome(a) for a in self.seats if a != agent]
        best = max(others) if others else self.outcome(agent)
        mine = self.outcome(agent)
        return 1.0 if mine > best else 0.0 if mine < best else 0.5

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["trajectories"] = {a: t.to_json() for a, t in self.trajectories.items()}
        return record


class ScriptedSeat:
    """A scripted player for any seat of a game that has ``expert_action(agent)`` / ``legal_actions(agent)``.

    ``kind="expert"`` plays the game's optimal or reference strategy, ``"random"`` a uniformly random legal move,
    drawn from ``(seed, the game's seed, the seat, the seat's turn)`` only, so a game's moves do not depend on which
    other games are played with it. Stateless: one object may sit at any number of seats and games at once.
    """

    KINDS = ("expert", "random")

    def __init__(self, kind: str = "expert", seed: int = 0):
        check_choice("kind", kind, self.KINDS)
        check_range("seed", seed, integer=True)
        self.kind, self.seed = kind, seed
        self.name = f"scripted:{kind}"

    def start(self, env: Any, observation: str, info: dict[str, Any]) -> None:
        method = "expert_action" if self.kind == "expert" else "legal_actions"
        if not callable(getattr(env.unwrapped, method, None)):
            raise ConfigError(f"ScriptedSeat({self.kind!r}) needs a game with {method}(agent); {env} has none")

    def act(self, observation: str, info: dict[str, Any]) -> str:
        game, agent = info["game"].unwrapped, info["agent"]
        if self.kind == "expert":
            return game.expert_action(agent)
        moves = game.legal_actions(agent)
        rng = random.Random(f"{self.seed}/{info['game_seed']}/{agent}/{info['seat_turn']}")
        return moves[rng.randrange(len(moves))] if moves else ""


#: The scripted players' names in a seat spec (``agentenv play --opponent``, ``eval``, ``elo``): name -> kind.
SCRIPTED_SEATS = {"expert": "expert", "optimal": "expert", "random": "random"}
_seat_builders: list[Callable[..., Any]] = []


def register_seat_builder(builder: Callable[..., Any]) -> None:
    """Let :func:`seat_player` build the players of specs other than the scripted ones (``model:PATH``,
    ``vllm:PATH``, ``openai:URL#MODEL``): ``builder(role, spec, sampling, seed=...)`` returns the seat's policy. The
    layer that owns the model runners registers one (``agentenv.policies``' command plugin does, when the
    ``agentenv`` command loads), so the core seats models without importing that layer. The newest one is used."""
    _seat_builders.append(builder)


def seat_player(role: str, spec: str, sampling: tuple[Any, ...] = (), *, seed: int = 0) -> Any:
    """The player a seat spec names: ``expert`` (alias ``optimal``) or ``random`` are :class:`ScriptedSeat`; any
    other spec goes to the registered builder (:func:`register_seat_builder`) with ``sampling`` (its own options).
    ``role`` names the argument in errors."""
    if spec in SCRIPTED_SEATS:
        return ScriptedSeat(SCRIPTED_SEATS[spec], seed=seed)
    if not _seat_builders:
        raise ConfigError(
            f"{role}={spec!r} is not a scripted player ({', '.join(SCRIPTED_SEATS)}), and no model runners are "
            "loaded to build it (the agentenv.policies layer registers them)"
        )
    return _seat_builders[-1](role, spec, sampling, seed=seed)


def is_token_policy(policy: Any) -> bool:
    """Whether a seat's policy generates token ids (a model runner with a tokenizer), else it plays text turns."""
    return callable(getattr(policy, "generate", None)) and getattr(policy, "tokenizer", None) is not None


def policy_name(policy: Any) -> str:
    return str(getattr(policy, "name", type(policy).__name__))


@dataclass
class _Seat:
    """An agent's side of a live game: its policy, its trajectory so far, and its turn awaiting the game's answer."""

    policy: Any
    trajectory: Trajectory
    chat_format: ChatFormat | None  # None: a text seat (scripted), whose trajectory has turns but no tokens
    max_new_tokens: int = 0
    started: bool = False  # it has read its first observation
    open: bool = False  # it has acted and not yet read the answer
    action: str = ""  # the open turn's text
    last: Generation | None = None  # the open turn's generation (model seats)
    carry: float = 0.0  # rewards seen before its first turn, added to that turn
    answer: str | None = None  # the game's answer to its last turn, to append before it generates again


@dataclass
class _Game:
    index: int
    env: Any
    turns: Iterator[str]  # env.agent_iter()
    record: GameRecord
    seats: dict[str, _Seat]


def play_game(env: Any, policies: Mapping[str, Any], seed: int, **kwargs: Any) -> GameRecord:
    """Play one game of ``env`` (a PettingZoo AEC env) from ``reset(seed=seed)`` with ``policies`` (agent -> policy);
    see :func:`play_games` for the keywords."""
    return play_games([env], policies, [seed], **kwargs)[0]


def play_games(
    envs: Sequence[Any],
    seatings: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    seeds: Iterable[int],
    *,
    chat_format: ChatFormat | None = None,
    sampling: Sampling | None = None,
    max_context_tokens: int = 4096,
    env_id: str = "",
    instructions: str = DEFAULT_INSTRUCTIONS,
    record_prompts: bool = False,
    on_game: Callable[[GameRecord], None] | None = None,
) -> list[GameRecord]:
    """Play one game per seed, ``len(envs)`` at a time, and return the records in the order of the seeds.

    ``seatings`` maps every agent of the game to its policy, once for all games or one mapping per seed. A model
    seat is any :class:`~agentenv.policy.TokenPolicy` with a tokenizer: its conversation is built with
    ``chat_format`` (default: one from its tokenizer's chat template) and it generates with ``sampling`` (default:
    its own); the seats of all live games that share a policy object generate in one ``generate`` call. Any other
    seat is an :class:`~agentenv.policy.EpisodePolicy` playing text turns (e.g. :class:`ScriptedSeat`): ``start``
    gets the game env, and ``act``'s info also has ``agent``, ``game`` (the env), ``game_seed`` and ``seat_turn``.

    A game whose next model turn would not fit in ``max_context_tokens`` stops, every trajectory ``truncated`` (that
    seat's also ``context_truncated``); a failed generation or env call stops only its game, with ``error`` set. A
    stopped game drops the turns still awaiting the game's answer, so each trajectory ends with an answered turn.
    """
    scheduler = GameScheduler(
        envs, seatings, seeds, chat_format=chat_format, sampling=sampling, max_context_tokens=max_context_tokens,
        env_id=env_id, instructions=instructions, record_prompts=record_prompts, on_game=on_game,
    )  # fmt: skip
    return scheduler.run()


class GameScheduler:
    """The loop behind :func:`play_games`: pending games go to free envs, every live game is played until a model
    seat must generate (text seats act at once), those turns are generated in one batch per policy and stepped, and
    finished games free their envs. One instance plays one :meth:`run`."""

    def __init__(
        self, envs: Sequence[Any], seatings: Mapping[str, Any] | Sequence[Mapping[str, Any]], seeds: Iterable[int],
        *, chat_format: ChatFormat | None = None, sampling: Sampling | None = None, max_context_tokens: int = 4096,
        env_id: str = "", instructions: str = DEFAULT_INSTRUCTIONS, record_prompts: bool = False,
        on_game: Callable[[GameRecord], None] | None = None,
    ):  # fmt: skip
        seeds = list(seeds)
        seatings = [seatings] * len(seeds) if isinstance(seatings, Mapping) else list(seatings)
        if not envs:
            raise ConfigError("play_games needs at least one env")
        if len(seatings) != len(seeds):
            raise ConfigError(f"seatings: {len(seatings)} given for {len(seeds)} seeds; give one per seed, or one")
        check_range("max_context_tokens", max_context_tokens, 1, integer=True)
        self.envs, self.chat_format, self.sampling = list(envs), chat_format, sampling
        self.max_context_tokens, self.env_id, self.instructions = max_context_tokens, env_id, instructions
        self.record_prompts, self.on_game = record_prompts, on_game
        self.pending = [(i, seed, seating) for i, (seed, seating) in enumerate(zip(seeds, seatings, strict=True))][::-1]
        self.free = list(range(len(self.envs)))[::-1]
        self.live: dict[int, _Game] = {}  # env slot -> its game
        self.done: dict[int, GameRecord] = {}
        self.formats: dict[int, ChatFormat] = {}  # id(tokenizer) -> its chat format

    def run(self) -> list[GameRecord]:
        while self.pending or self.live:
            while self.pending and self.free:
                self.start(self.free.pop(), *self.pending.pop())
            requests = []
            for slot in list(self.live):
                agent = self.advance(slot)
                if agent is not None:
                    requests.append((slot, agent))
            self.generate(requests)
        return [self.done[i] for i in sorted(self.done)]

    def seat(self, policy: Any, trajectory: Trajectory) -> _Seat:
        if not is_token_policy(policy):
            if not callable(getattr(policy, "act", None)):
                raise ConfigError(f"seat policy {policy!r} has neither generate() and a tokenizer, nor act()")
            return _Seat(policy, trajectory, None)
        if self.chat_format is not None:
            chat_format = self.chat_format
        else:
            key = id(policy.tokenizer)
            chat_format = self.formats[key] = self.formats.get(key) or ChatFormat(policy.tokenizer)
        default = self.sampling or getattr(policy, "sampling", None)
        return _Seat(policy, trajectory, chat_format, default.max_new_tokens if default is not None else 0)

    def start(self, slot: int, index: int, seed: int, seating: Mapping[str, Any]) -> None:
        """Reset the slot's env for a new game (bad seatings fail fast; a failing reset fails only this game)."""
        env = self.envs[slot]
        agents = list(env.possible_agents)
        if set(seating) != set(agents):
            missing, unknown = sorted(set(agents) - set(seating)), sorted(set(seating) - set(agents))
            raise ConfigError(
                f"seating must map every agent {agents} to a policy: missing {missing}, unknown {unknown}"
            )
        name = self.env_id or str(getattr(env, "metadata", {}).get("name") or type(env.unwrapped).__name__)
        names = {a: policy_name(seating[a]) for a in agents}
        record = GameRecord(name, seed, names, returns=dict.fromkeys(agents, 0.0))
        seats = {}
        for agent in agents:
            trajectory = Trajectory(name, record.seats[agent], seed, agent, "", "", None)
            seats[agent], record.trajectories[agent] = self.seat(seating[agent], trajectory), trajectory
        self.live[slot] = game = _Game(index, env, iter([]), record, seats)
        try:
            env.reset(seed=seed)
            game.turns = iter(env.agent_iter())
        except Exception as e:
            self.stop(slot, error=f"reset failed: {e!r}")

    def advance(self, slot: int) -> str | None:
        """Play the slot's game until a model seat must generate: that agent, or None once the game is over."""
        game = self.live[slot]
        try:
            for agent in game.turns:
                observation, reward, terminated, truncated, info = game.env.last()
                seat = game.seats[agent]
                self.observe(game, agent, str(observation), float(reward), info)
                if terminated or truncated:
                    self.end_seat(game, agent, bool(terminated), bool(truncated), info)
                    game.env.step(None)
                elif seat.chat_format is None:
                    self.act_text(game, agent, str(observation), info)
                elif self.answer(seat):
                    return agent
                else:
                    self.stop(slot, context=agent)
                    return None
        except ConfigError:
            raise  # a seat that cannot play this game (e.g. no expert_action) is bad configuration
        except Exception as e:
            self.stop(slot, error=f"env step failed: {e!r}")
            return None
        self.finish(slot)
        return None

    def observe(self, game: _Game, agent: str, observation: str, reward: float, info: dict[str, Any]) -> None:
        """The agent's next observation and the rewards since it last acted: they close its open turn (or, before
        its first turn, open its conversation)."""
        seat, trajectory = game.seats[agent], game.seats[agent].trajectory
        game.record.returns[agent] += reward
        if not seat.started:
            seat.started, seat.carry = True, reward
            trajectory.instructions = str(info.get("instructions") or self.instructions.replace("{agent}", agent))
            trajectory.first_observation = observation
            if seat.chat_format is not None:
                opening = [
                    {"role": "system", "content": trajectory.instructions},
                    {"role": "user", "content": observation},
                ]
                ids = seat.chat_format.start(opening)
                trajectory.token_ids, trajectory.loss_mask = ids, [0] * len(ids)
                trajectory.logprobs, trajectory.prompt_length = [0.0] * len(ids), len(ids)
            return
        if not seat.open:  # no turn to close (cannot happen on the AEC API: an agent acts after each observation)
            seat.carry += reward
            return
        invalid = bool(info.get("invalid_action"))
        parts = dict(info.get("reward_parts", {}))
        trajectory.turns.append(Turn(seat.action, observation, reward + seat.carry, invalid, parts))
        seat.open, seat.carry, seat.answer = False, 0.0, observation

    def answer(self, seat: _Seat) -> bool:
        """Append the game's answer to the seat's last turn; False when its next turn would not fit the context."""
        trajectory = seat.trajectory
        if seat.answer is not None and seat.chat_format is not None and seat.last is not None:
            ended = seat.chat_format.ended(seat.last.token_ids)
            trajectory.add_context(seat.chat_format.delta({"role": "user", "content": seat.answer}, ended=ended))
        seat.answer = None
        return len(trajectory.token_ids) + seat.max_new_tokens <= self.max_context_tokens

    def act_text(self, game: _Game, agent: str, observation: str, info: dict[str, Any]) -> None:
        """A text seat's turn: ask its policy and step the game."""
        seat = game.seats[agent]
        seat_info = {**info, "agent": agent, "game": game.env, "game_seed": game.record.seed}
        seat_info["seat_turn"] = len(seat.trajectory.turns)
        if not seat.trajectory.turns:
            seat.policy.start(game.env, observation, seat_info)
        action = seat.policy.act(observation, seat_info)
        seat.action, seat.open = action if isinstance(action, str) else repr(action), True
        game.env.step(action)

    def generate(self, requests: list[tuple[int, str]]) -> None:
        """Generate the requested model turns, one batch per policy object, and step their games."""
        groups: dict[int, list[tuple[int, str]]] = {}
        for slot, agent in requests:
            groups.setdefault(id(self.live[slot].seats[agent].policy), []).append((slot, agent))
        for group in groups.values():
            policy = self.live[group[0][0]].seats[group[0][1]].policy
            prompts = [list(self.live[slot].seats[agent].trajectory.token_ids) for slot, agent in group]
            try:
                generations = (policy.generate(prompts, self.sampling) if self.sampling is not None
                               else policy.generate(prompts))  # fmt: skip
            except ConfigError:
                raise  # bad configuration fails fast, not game by game
            except Exception as e:  # a failed generation call fails these games, not the run
                for slot, _ in group:
                    self.stop(slot, error=f"generation failed: {e!r}")
                continue
            for (slot, agent), prompt, generation in zip(group, prompts, generations, strict=True):
                self.take_turn(slot, agent, prompt, generation)

    def take_turn(self, slot: int, agent: str, prompt: list[int], generation: Generation) -> None:
        """Append a generated turn to the agent's trajectory and step the game with its text."""
        game = self.live[slot]
        seat, trajectory = game.seats[agent], game.seats[agent].trajectory
        if generation.finish_reason == "error":
            self.stop(slot, error=f"generation failed: {generation.error}")
            return
        if self.record_prompts:
            trajectory.prompts.append(prompt)
        trajectory.add_agent_turn(generation.token_ids, generation.logprobs)
        seat.action, seat.last, seat.open = generation.text, generation, True
        try:
            game.env.step(generation.text)
        except Exception as e:
            self.stop(slot, error=f"env step failed: {e!r}")

    def end_seat(self, game: _Game, agent: str, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        trajectory = game.seats[agent].trajectory
        trajectory.success = bool(info.get("success"))
        trajectory.terminated, trajectory.truncated = terminated, truncated
        if "outcome" in info:
            game.record.outcomes[agent] = float(info["outcome"])

    def stop(self, slot: int, *, error: str = "", context: str = "") -> None:
        """End a game before its end: its turns awaiting an answer are dropped, every trajectory is truncated."""
        game = self.live[slot]
        for agent, seat in game.seats.items():
            trajectory = seat.trajectory
            if seat.open and seat.chat_format is not None:
                trajectory.turn_spans.pop()
                del trajectory.prompts[len(trajectory.turn_spans) :]
            seat.open = False
            keep = trajectory.turn_spans[-1][1] if trajectory.turn_spans else trajectory.prompt_length
            del trajectory.token_ids[keep:], trajectory.loss_mask[keep:], trajectory.logprobs[keep:]
            trajectory.truncated, trajectory.error = True, error
            trajectory.context_truncated = agent == context
        game.record.truncated, game.record.error = True, error
        self.finish(slot)

    def finish(self, slot: int) -> None:
        game = self.live.pop(slot)
        record = game.record
        record.terminated = all(t.terminated for t in record.trajectories.values())
        record.truncated = record.truncated or any(t.truncated for t in record.trajectories.values())
        self.done[game.index] = record
        self.free.append(slot)
        if self.on_game is not None:
            self.on_game(record)


# ---- evaluation -------------------------------------------------------------------------------------------------
@dataclass
class GameEvaluation:
    """How a policy fared against a fixed opponent: wins, draws and losses over the games that did not fail, with
    95% Wilson intervals (:meth:`rates`). ``records`` holds the games, in the order played."""

    policy: str
    opponent: str
    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    errors: int = 0
    mean_outcome: float = 0.0  # the policy's mean payoff
    invalid_rate: float = 0.0  # the share of the policy's turns that were invalid
    records: list[GameRecord] = field(default_factory=list, repr=False)
    policy_seats: list[str] = field(default_factory=list, repr=False)  # the policy's agent in each record

    def rates(self) -> dict[str, float]:
        """``win_rate``, ``draw_rate``, ``loss_rate``, each with ``_ci_low``/``_ci_high`` (95% Wilson)."""
        out: dict[str, float] = {}
        for name, count in (("win", self.wins), ("draw", self.draws), ("loss", self.losses)):
            low, high = wilson_interval(count, self.games)
            out[f"{name}_rate"] = count / self.games if self.games else math.nan
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
        return out

    def summary(self) -> dict[str, Any]:
        """Counts, rates and intervals, as one flat dict (what ``agentenv eval`` prints and saves)."""
        counts = {k: getattr(self, k) for k in ("games", "wins", "draws", "losses", "errors")}
        extra = {"mean_outcome": self.mean_outcome, "invalid_rate": self.invalid_rate}
        return {"policy": self.policy, "opponent": self.opponent, **counts, **self.rates(), **extra}

    def results(self) -> list[tuple[str, str, float]]:
        """Each game as ``(policy, opponent, the policy's score)``: rows for :func:`elo_ratings`."""
        return [
            (self.policy, self.opponent, record.score(seat))
            for record, seat in zip(self.records, self.policy_seats, strict=True)
            if not record.error
        ]


def evaluate_games(
    envs: Any | Sequence[Any],
    policy: Any,
    opponent: Any,
    games: int,
    *,
    seed: int = 0,
    name: str = "",
    opponent_name: str = "",
    **play: Any,
) -> GameEvaluation:
    """Play ``policy`` against ``opponent`` for ``games`` games and count its wins, draws and losses.

    Seats alternate and each seed is played from every seat in turn (game ``i``: seed ``seed + i // n_agents``, the
    policy in seat ``i % n_agents``, the opponent in the others), so a game that favours a seat favours neither
    player. A game is won when the policy's payoff (:meth:`GameRecord.score`) beats every other seat's, drawn when
    it ties the best. Games that failed (``error``) are counted apart. ``envs`` is one env or several to play in
    parallel; ``play`` goes to :func:`play_games`.
    """
    check_range("games", games, 1, integer=True)
    envs = list(envs) if isinstance(envs, (list, tuple)) else [envs]
    agents = list(envs[0].possible_agents)
    seats = [agents[i % len(agents)] for i in range(games)]
    seatings = [{a: policy if a == seat else opponent for a in agents} for seat in seats]
    seeds = [seed + i // len(agents) for i in range(games)]
    records = play_games(envs, seatings, seeds, **play)
    evaluation = GameEvaluation(name or policy_name(policy), opponent_name or policy_name(opponent))
    evaluation.records, evaluation.policy_seats = records, seats
    outcomes, turns, invalid = [], 0, 0
    for record, seat in zip(records, seats, strict=True):
        if record.error:
            evaluation.errors += 1
            continue
        score = record.score(seat)
        evaluation.wins += score == 1.0
        evaluation.draws += score == 0.5
        evaluation.losses += score == 0.0
        outcomes.append(record.outcome(seat))
        turns += len(record.trajectories[seat].turns)
        invalid += sum(t.invalid_action for t in record.trajectories[seat].turns)
    evaluation.games = len(outcomes)
    evaluation.mean_outcome = sum(outcomes) / len(outcomes) if outcomes else math.nan
    evaluation.invalid_rate = invalid / turns if turns else 0.0
    return evaluation


def expected_score(rating: float, other: float) -> float:
    """Elo's expected score of a player rated ``rating`` against one rated ``other`` (400 points = 10:1 odds)."""
    return 1.0 / (1.0 + 10.0 ** ((other - rating) / 400.0))


def elo_ratings(
    results: Iterable[tuple[str, str, float]],
    *,
    anchor: float = 1000.0,
    prior_draws: float = 1.0,
    tolerance: float = 1e-9,
    max_iterations: int = 100_000,
) -> dict[str, float]:
    """Elo-scale ratings from a results table of ``(player_a, player_b, score of a)``, score 1 / 0.5 / 0.

    The Bradley–Terry maximum-likelihood fit (the model Elo's updates approximate), by Hunter's (2004) MM
    iterations, with a draw counted as half a win each way. Unlike Elo's running updates it does not depend on the
    order of the games: the same table gives the same ratings. Every player also draws ``prior_draws`` virtual
    games against a fixed player rated ``anchor``, which keeps unbeaten and winless players finite and sets the
    scale: a player with an even record against the field is rated ``anchor``. Players sorted by name.
    """
    check_range("prior_draws", prior_draws, 0.0)
    if prior_draws <= 0:
        raise ConfigError(f"prior_draws={prior_draws!r} must be > 0: it keeps unbeaten players' ratings finite")
    wins: dict[str, float] = {}
    games: dict[tuple[str, str], float] = {}
    for a, b, score in results:
        a, b = str(a), str(b)
        check_range(f"score of {a} against {b}", score, 0.0, 1.0)
        if a == b:
            raise ConfigError(f"a result of {a!r} against itself cannot be rated")
        wins[a] = wins.get(a, 0.0) + score
        wins[b] = wins.get(b, 0.0) + 1.0 - score
        for pair in ((a, b), (b, a)):
            games[pair] = games.get(pair, 0.0) + 1.0
    players = sorted(wins)
    opponents: dict[str, list[tuple[str, float]]] = {p: [] for p in players}
    for (p, q), n in games.items():
        opponents[p].append((q, n))
    strength = dict.fromkeys(players, 1.0)  # 10 ** ((rating - anchor) / 400); the anchor's is 1
    for _ in range(max_iterations):
        new = {}
        for p in players:
            denominator = prior_draws / (strength[p] + 1.0)
            denominator += sum(n / (strength[p] + strength[q]) for q, n in opponents[p])
            new[p] = (wins[p] + prior_draws / 2) / denominator
        change = max((abs(math.log(new[p] / strength[p])) for p in players), default=0.0)
        strength = new
        if change < tolerance:
            break
    return {p: anchor + 400.0 * math.log10(strength[p]) for p in players}


__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "SCRIPTED_SEATS",
    "GameEvaluation",
    "GameRecord",
    "GameScheduler",
    "ScriptedSeat",
    "elo_ratings",
    "evaluate_games",
    "expected_score",
    "is_token_policy",
    "play_game",
    "play_games",
    "register_seat_builder",
    "seat_player",
]
