"""Proposer–solver: one agent writes arithmetic tasks, the other solves them. The game computes each task's answer
exactly and the rewards library's numeric verifier checks the solver; the proposer is paid for tasks the solver
solves about half the time (the learnability reward of self-play curricula: Absolute Zero, R-Zero).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from agentenv.envs.games.base import TurnGame
from agentenv.errors import check_range
from agentenv.rewards.base import Sample
from agentenv.rewards.rules import NumericMatch

PROPOSER, SOLVER = "proposer_0", "solver_0"
RULES = {
    PROPOSER: """You are the proposer, writing arithmetic tasks for the solver for {rounds} rounds. Each round \
write one line:
  task: <expression>
using whole numbers from 0 to {max_operand}, the operators + - * and parentheses, with 1 to {max_operators} \
operators; the game computes the answer exactly. You score 1 - |rate - {target:g}| / {scale:g}, where rate is the \
fraction of your tasks the solver solves: tasks that are neither too easy nor too hard for it score best.""",
    SOLVER: """You are the solver. For {rounds} rounds the proposer gives you an arithmetic task (whole numbers, \
+ - * and parentheses). Answer each with one line:
  answer: <integer>
You score the fraction of tasks you solve.""",
}
#: Longest task, answer magnitude the game accepts (exact integers, and exact as floats for the verifier).
MAX_TASK_CHARS = 300
MAX_MAGNITUDE = 10**15
_OPERATORS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}
_TASK = re.compile(r"task\s*:\s*(.+)", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*:\s*(-?\d[\d,]{0,24})\s*\.?", re.IGNORECASE)


class _NotATask(ValueError):
    pass


def evaluate_task(expression: str, *, max_operators: int, max_operand: int) -> int | str:
    """The exact value of an arithmetic task, or why it is not one (never raises)."""
    if len(expression) > MAX_TASK_CHARS:
        return f"a task has at most {MAX_TASK_CHARS} characters"
    if not re.fullmatch(r"[0-9+\-*() ]+", expression):
        return "use only whole numbers, + - * and parentheses"
    try:
        tree = ast.parse(expression, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "the expression does not parse"
    count = 0

    def value(node: ast.AST) -> int:
        nonlocal count
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value > max_operand:
                raise _NotATask(f"numbers go up to {max_operand}")
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            count += 1
            result = _OPERATORS[type(node.op)](value(node.left), value(node.right))
            if abs(result) > MAX_MAGNITUDE:
                raise _NotATask(f"every intermediate result must stay within ±10^{len(str(MAX_MAGNITUDE)) - 1}")
            return result
        raise _NotATask("use only whole numbers, + - * and parentheses")

    try:
        result = value(tree)
    except (_NotATask, RecursionError) as e:
        return str(e) or "the expression is too deep"
    if not 1 <= count <= max_operators:
        return f"use 1 to {max_operators} operators (this task has {count})"
    return result


def random_task(rng: np.random.Generator, operators: int, max_operand: int) -> str:
    """A task with ``operators`` operators: numbers from 2 to ``max_operand``, each step wrapping what came before in
    parentheses on a random side."""
    text = str(int(rng.integers(2, max_operand + 1)))
    for i in range(operators):
        number, symbol = int(rng.integers(2, max_operand + 1)), "+-*"[int(rng.integers(3))]
        left = f"({text})" if i else text
        text = f"{left} {symbol} {number}" if rng.integers(2) else f"{number} {symbol} {left}"
    return text


class ProposerSolverGame(TurnGame):
    """``proposer_0`` writes ``rounds`` (2-32) tasks, ``solver_0`` answers each; the proposer moves first.

    Knobs: ``max_operators`` (1-10) and ``max_operand`` (10-1,000,000) bound how hard a task may be; ``target``
    (0.1-0.9) is the solve rate the proposer aims for. Outcome: the solver scores its solve rate; the proposer
    ``1 - |rate - target| / max(target, 1 - target)`` (``1 - |2 rate - 1|`` at 0.5), both in [0, 1]. ``dense`` adds
    potential-based shaping with Φ(solver) = tasks solved / rounds and Φ(proposer) = (k / rounds) × its score on the
    k rounds played, so a dense episode sums to the outcome. A malformed task (unreadable, other operators, too
    many operators or too large numbers) or answer is an invalid turn, replayed; ``max_invalid`` in a row forfeit:
    a proposer that forfeits scores 0 and the rounds it did not pose count as solved; a solver's count as failed.
    """

    metadata: ClassVar[dict[str, Any]] = {**TurnGame.metadata, "name": "proposer_solver_v0"}
    agent_names: ClassVar[tuple[str, ...]] = (PROPOSER, SOLVER)

    def __init__(
        self, *, rounds: int = 6, max_operators: int = 4, max_operand: int = 100, target: float = 0.5, **kwargs: Any
    ):
        check_range("rounds", rounds, 2, 32, integer=True)
        check_range("max_operators", max_operators, 1, 10, integer=True)
        check_range("max_operand", max_operand, 10, 1_000_000, integer=True)
        check_range("target", target, 0.1, 0.9)
        super().__init__(**kwargs)
        self.rounds, self.max_operators, self.max_operand = rounds, max_operators, max_operand
        self.target = float(target)
        self.verifier = NumericMatch(rel_tol=0.0, abs_tol=0.0, units="ignore")
        self.task: tuple[str, int] | None = None
        self.solved: list[bool] = []
        self._task_seed = 0

    def _new_game(self, rng: np.random.Generator) -> str:
        self._task_seed = int(rng.integers(2**31))
        self.task, self.solved = None, []
        scale = max(self.target, 1 - self.target)
        for agent in self.possible_agents:
            text = RULES[agent].format(
                rounds=self.rounds, max_operand=self.max_operand, max_operators=self.max_operators,
                target=self.target, scale=scale,
            )  # fmt: skip
            self._tell(agent, text)
        return PROPOSER

    def proposer_score(self, rate: float) -> float:
        return 1.0 - abs(rate - self.target) / max(self.target, 1 - self.target)

    def _status(self, agent: str) -> str:
        played = len(self.solved)
        tally = f"Solved so far: {sum(self.solved)} of {played}."
        if self._over:
            return f"The game is over. {tally} You score {self.infos[agent].get('outcome', 0.0):.2f}."
        head = f"Round {played + 1} of {self.rounds}. {tally}"
        if agent != self.agent_selection:
            return f"{head} Waiting for {self.agent_selection}."
        return f"{head} Your task." if agent == PROPOSER else f"{head} Task: {self.task[0]}. Your answer."  # type: ignore[index]

    def _play(self, agent: str, text: str) -> str | None:
        return self._propose(text) if agent == PROPOSER else self._answer(text)

    def _propose(self, text: str) -> str | None:
        match = _TASK.fullmatch(text)
        if match is None:
            return "write your task as: task: <expression>"
        expression = " ".join(match.group(1).split())
        value = evaluate_task(expression, max_operators=self.max_operators, max_operand=self.max_operand)
        if isinstance(value, str):
            return value
        self.task = (expression, value)
        k = len(self.solved) + 1
        self.transcript.append(f"Task {k}: {expression} = {value}")
        self._tell(SOLVER, f"Task {k}: {expression}")
        self._tell(PROPOSER, f"You posed task {k}: {expression} (answer: {value}).")
        return None

    def _answer(self, text: str) -> str | None:
        match = _ANSWER.fullmatch(text)
        if match is None or self.task is None:
            return "write your answer as: answer: <integer>"
        expression, value = self.task
        check = self.verifier(Sample(response=match.group(1), reference=str(value)))
        self.solved.append(check.value == 1.0)
        verdict = "correct" if self.solved[-1] else f"wrong; the answer is {value}"
        news = f"Task {len(self.solved)}: {expression}. The solver answered {match.group(1)}: {verdict}."
        self.transcript.append(news)
        self._tell(self.agents, news)
        if len(self.solved) == self.rounds:
            self._finish({"solved": sum(self.solved)})
        return None

    def _finish(self, info: dict[str, Any], proposer_forfeits: bool = False) -> None:
        rate = sum(self.solved) / self.rounds
        proposer = 0.0 if proposer_forfeits else self.proposer_score(rate)
        self._end({PROPOSER: proposer, SOLVER: rate}, {**info, "solve_rate": rate})

    def _forfeit(self, agent: str) -> None:
        self._tell(self.agents, f"The {agent} forfeits after {self.max_invalid} invalid turns in a row.")
        self.transcript.append(f"{agent} forfeits.")
        unplayed = self.rounds - len(self.solved)
        self.solved += [agent == PROPOSER] * unplayed
        self._finish({"forfeit": agent, "solved": sum(self.solved)}, proposer_forfeits=agent == PROPOSER)

    def _potentials(self) -> dict[str, float]:
        played = len(self.solved)
        if self.reward_mode != "dense" or not played:
            return dict.fromkeys(self.possible_agents, 0.0)
        solved = sum(self.solved)
        proposer = played / self.rounds * self.proposer_score(solved / played)
        return {PROPOSER: proposer, SOLVER: solved / self.rounds}

    # ---- scripted players -----------------------------------------------------------------------------------
    def _tasks(self, operators: int) -> str:
        """A valid task with ``operators`` operators, drawn from the game's seed and the round only."""
        rng = np.random.default_rng([self._task_seed, len(self.solved), operators])
        for _ in range(20):
            task = random_task(rng, operators, self.max_operand)
            if not isinstance(evaluate_task(task, max_operators=self.max_operators, max_operand=self.max_operand), str):
                return task
        return " + ".join(["1"] * (operators + 1))

    def level(self) -> int:
        """The expert proposer's difficulty now: a 1-up-1-down staircase on the operator count, which settles where
        the solver succeeds half the time (Levitt, 1971): one more operator after a solved task, one fewer after a
        failed one, starting from the middle."""
        level = (self.max_operators + 1) // 2
        for solved in self.solved:
            level = min(self.max_operators, level + 1) if solved else max(1, level - 1)
        return level

    def legal_actions(self, agent: str) -> list[str]:
        """The proposer: a task at every difficulty; the solver: the answer and its nearest neighbours, one on each
        side per operator of the task (a guesser errs more on longer tasks), so a random solver solves a task of n
        operators with probability 1 / (2n + 1). Empty when it is not the agent's turn."""
        if self._over or agent != self.agent_selection:
            return []
        if agent == PROPOSER:
            return [f"task: {self._tasks(n)}" for n in range(1, self.max_operators + 1)]
        expression, value = self.task  # type: ignore[misc]
        spread = sum(isinstance(node, ast.BinOp) for node in ast.walk(ast.parse(expression, mode="eval")))
        return [f"answer: {value + d}" for d in range(-spread, spread + 1)]

    def expert_action(self, agent: str) -> str:
        """The proposer: a task at the staircase's level; the solver: the exact answer."""
        if agent == PROPOSER:
            return f"task: {self._tasks(self.level())}"
        return f"answer: {self.task[1] if self.task else 0}"
