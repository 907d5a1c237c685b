"""Debate (after Irving et al., 2018): two debaters argue for two candidate answers to a question about documents
over a few rounds; then a judge reads both sides and decides. Zero-sum.

Questions come from the search world (``agentenv.envs.search``'s reading task: the documents that answer a question
about a fictional world, so no debater can know the answer beforehand); the wrong candidate is a value the same
documents state (a near miss the search rubric checks wrong), so both sides can quote the documents for their answer.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from agentenv.envs.games.base import TurnGame
from agentenv.errors import ConfigError, check_range
from agentenv.rewards.base import Sample
from agentenv.rewards.rules import normalize_answer

RULES = """You are {agent}, in a debate with {opponent} about a question on the documents below. One of the two \
answers is correct. A judge reads both sides after {rounds} round(s) (in each, {first} speaks first) and decides which \
side argued better; the winner scores 1, the loser -1.

{documents}

Question: {question}
You argue that the answer is: {mine}
{opponent} argues that the answer is: {theirs}

Each turn is one argument (several lines allowed) that names your answer. Quote the documents in double quotes as \
evidence: the judge checks every quote against the documents, and a quote that is not in them counts against you."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class DebateGame(TurnGame):
    """Two debaters, one assigned the correct answer (which one is drawn from the seed), argue for ``rounds`` rounds
    (1-5); then ``judge.compare(debater_0's side, debater_1's side)`` gives P(debater_0 argued better).

    Knobs: ``rounds``; ``hops`` (1-4), ``context_chars`` and ``world_seed`` pick the questions (harder questions need
    more documents); ``judge``: any object with ``compare(a, b) -> float`` taking two :class:`Sample`s (a
    :class:`~agentenv.rewards.judges.PairwiseJudge` with a model, a trained judge), by default the rule-based
    :class:`~agentenv.rewards.judges.EvidenceJudge`. Each side is ``Sample(response="Answer: <its answer>" and its
    arguments, prompt=documents and question, reference=the correct answer, metadata={"answer", "documents",
    "references"})``. Outcome: +1 to the side preferred (P > 0.5), -1 to the other, 0 to both on 0.5. ``dense`` adds
    zero-sum shaping with Φ = P(this side argued better so far) - 0.5 (the judge is asked after every turn). An
    argument that does not name the debater's answer, or is unreadable, is an invalid turn: it passes the move and
    counts as the debater's argument of that round; ``max_invalid`` in a row forfeit the debate.
    """

    metadata: ClassVar[dict[str, Any]] = {**TurnGame.metadata, "name": "debate_v0"}
    agent_names: ClassVar[tuple[str, ...]] = ("debater_0", "debater_1")
    invalid_turn_passes = True
    multiline_actions = True

    def __init__(
        self, *, rounds: int = 2, hops: int = 1, context_chars: int = 400, world_seed: int = 0, judge: Any = None,
        **kwargs: Any,
    ):  # fmt: skip
        check_range("rounds", rounds, 1, 5, integer=True)
        check_range("hops", hops, 1, 4, integer=True)
        check_range("context_chars", context_chars, 100, 4000, integer=True)
        check_range("world_seed", world_seed, 0, integer=True)
        if judge is None:
            from agentenv.rewards.judges.evidence import EvidenceJudge

            judge = EvidenceJudge()
        if not callable(getattr(judge, "compare", None)):
            raise ConfigError(
                f"judge={type(judge).__name__} has no compare(a, b) method; pass a PairwiseJudge, an EvidenceJudge "
                "or any object with compare(a, b) -> P(a better than b)"
            )
        super().__init__(**kwargs)
        self.rounds, self.hops, self.context_chars, self.world_seed = rounds, hops, context_chars, world_seed
        self.judge = judge
        self._reading: Any = None
        self.question, self.reference, self.documents = "", "", ""
        self.aliases: tuple[str, ...] = ()
        self.answers: dict[str, str] = {}
        self.arguments: dict[str, list[str]] = {a: [] for a in self.agent_names}

    def _draw_question(self, rng: np.random.Generator) -> tuple[Any, str]:
        """A question whose documents state another value to argue for, and that value."""
        if self._reading is None:
            from agentenv.envs.search.reading import ReadingEnv

            self._reading = ReadingEnv(hops=self.hops, context_chars=self.context_chars, world_seed=self.world_seed)
        while True:
            observation, _ = self._reading.reset(seed=int(rng.integers(2**31)))
            q = self._reading.question
            wrong = [w for w in self._reading.near_misses() if not any(a in w for a in q.answers)]
            if wrong:
                self.documents = observation.rsplit("\n\nQuestion: ", 1)[0]
                return q, wrong[0]

    def _new_game(self, rng: np.random.Generator) -> str:
        q, wrong = self._draw_question(rng)
        self.question, self.reference, self.aliases = q.text, q.answer, tuple(q.answers)
        honest = self.possible_agents[int(rng.integers(2))]
        self.answers = {a: q.answer if a == honest else wrong for a in self.possible_agents}
        self.arguments = {a: [] for a in self.possible_agents}
        for agent in self.possible_agents:
            other = self._next_agent(agent)
            text = RULES.format(
                agent=agent, opponent=other, rounds=self.rounds, first=self.possible_agents[0],
                documents=self.documents, question=self.question, mine=self.answers[agent], theirs=self.answers[other],
            )  # fmt: skip
            self._tell(agent, text)
        self.transcript.append(f"Question: {self.question} Answers: {self.answers} (correct: {self.reference})")
        return self.possible_agents[0]

    def _status(self, agent: str) -> str:
        if self._over:
            outcome = self.infos[agent].get("outcome")
            result = "You won." if outcome == 1 else "You lost." if outcome == -1 else "It is a draw."
            return f"The debate is over. {result}"
        done = len(self.arguments[self.agent_selection])
        prompt = "Your argument." if agent == self.agent_selection else f"Waiting for {self.agent_selection}."
        return f"Round {min(done + 1, self.rounds)} of {self.rounds}. {prompt}"

    def _play(self, agent: str, text: str) -> str | None:
        mine = self.answers[agent]
        if f" {normalize_answer(mine)} " not in f" {normalize_answer(text)} ":
            return f"each argument must name your answer, {mine}"
        self.arguments[agent].append(text)
        self.transcript.append(f"{agent}: {text}")
        self._tell(self._next_agent(agent), f"{agent} argues:\n{text}")
        return None

    def _after_turn(self) -> None:
        if self.turn >= 2 * self.rounds:  # every turn, valid or not, is one debater's argument of its round
            preference = self.preference()
            first, second = self.possible_agents
            sign = float(np.sign(preference - 0.5))
            winner = first if sign > 0 else second if sign < 0 else None
            self._tell(self.agents, f"The judge prefers {winner or 'neither side'} (P = {preference:.2f}).")
            self.transcript.append(f"Judge: P({first} argued better) = {preference:.3f}")
            info = {"judge_preference": preference, "winner": winner, "answers": dict(self.answers),
                    "correct_answer": self.reference}  # fmt: skip
            self._end({first: sign, second: -sign}, info)

    def side(self, agent: str) -> Sample:
        """What the judge reads of ``agent``'s side: its answer and arguments, with the documents and question."""
        response = "\n\n".join([f"Answer: {self.answers[agent]}", *self.arguments[agent]])
        metadata = {"answer": self.answers[agent], "documents": self.documents, "references": list(self.aliases)}
        prompt = f"{self.documents}\n\nQuestion: {self.question}"
        return Sample(response=response, prompt=prompt, reference=self.reference, metadata=metadata)

    def preference(self) -> float:
        """The judge's P(debater_0 argued better than debater_1) on the arguments so far, in [0, 1]."""
        first, second = self.possible_agents
        value = float(self.judge.compare(self.side(first), self.side(second)))
        return min(1.0, max(0.0, value)) if np.isfinite(value) else 0.5

    def _forfeit(self, agent: str) -> None:
        winner = self._next_agent(agent)
        self._tell(self.agents, f"{agent} forfeits after {self.max_invalid} invalid turns in a row.")
        self.transcript.append(f"{agent} forfeits.")
        outcome = {a: 1.0 if a == winner else -1.0 for a in self.agents}
        self._end(outcome, {"winner": winner, "forfeit": agent, "correct_answer": self.reference})

    def _potentials(self) -> dict[str, float]:
        if self.reward_mode != "dense" or not self.answers:
            return dict.fromkeys(self.possible_agents, 0.0)
        edge = self.preference() - 0.5
        first, second = self.possible_agents
        return {first: edge, second: -edge}

    # ---- scripted players -----------------------------------------------------------------------------------
    def sentences(self) -> list[str]:
        """The documents' sentences (titles dropped), the spans a debater can quote."""
        lines = [line for line in self.documents.splitlines() if line.strip() and not line.startswith("[")]
        found = [s.strip() for line in lines for s in _SENTENCE.split(line.strip(" .")) if s.strip()]
        return [s.rstrip(".") for s in dict.fromkeys(found)]

    def legal_actions(self, agent: str) -> list[str]:
        """Arguments a random debater picks from: the bare claim, the claim against the other answer, the claim with
        each sentence of the documents quoted, and the claim with a made-up quote (empty when not its turn)."""
        if self._over or agent != self.agent_selection:
            return []
        mine, theirs = self.answers[agent], self.answers[self._next_agent(agent)]
        quoted = [f'The answer is {mine}. The documents say: "{s}."' for s in self.sentences()]
        made_up = f'The answer is {mine}. The documents say: "The answer to the question is {mine}."'
        return [f"The answer is {mine}.", f"The answer is {mine}, not {theirs}.", *quoted, made_up]

    def expert_action(self, agent: str) -> str:
        """The strongest argument against the rule judge: the claim with the sentence of the documents that states it
        quoted (honest or not: a true sentence that names the answer is the best support either side has)."""
        mine = self.answers[agent]
        support = [s for s in self.sentences() if f" {normalize_answer(mine)} " in f" {normalize_answer(s)} "]
        if not support:
            return f"The answer is {mine}."
        support.sort(key=lambda s: len(s.split()) < 4)  # a quote the judge counts: the first long enough
        return f'The answer is {mine}. The documents say: "{support[0]}."'
