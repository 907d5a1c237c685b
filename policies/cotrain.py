"""Policy–judge co-training (Cooper / URPO): the policy learns from a judge's reward while the judge keeps learning
from fresh policy samples that the env's rule verifier labels.

:class:`JudgedReward` wraps each training env: when an episode ends with an answer, the reward the policy sees is
the judge's P(yes) (or its verdict) instead of the verifier's score, which stays in ``info["verified"]``. After
each RL iteration :meth:`CoTrainer.after_iteration` reads what the judge paid against what the verifier says —
the hacking monitor: disagreement, the judge's false-positive and false-negative rates at its threshold (with the
answers that fooled it and the right ones it refused), its AUROC on the iteration's answers (threshold-free: a
P(yes) reward pays by rank within a group), the policy's verified success — and then trains the judge a few steps
on the newest verified samples (a replay window), so the reward the policy chases is pulled back toward the truth
as the policy explores. ``agentenv train`` runs it for a recipe with a ``cotrain:`` section and plots the monitor
in ``cotrain.png``.

Besides the policy's answers, the judge trains on what Cooper adds for each question the policy meets: the
reference answer as a positive and, when the env offers ``near_misses(k)`` (wrong answers its own documents
suggest, each checked wrong by its rule verifier), those as hard negatives — so the judge has both labels from the
first iteration and has already refused the wrong names and numbers a policy drifts to. ``format_misses(k)`` adds
the reference in forms the verifier refuses ('1,807 m' for '1807', 'the textiles sector', a misspelled name), the
forms a policy's answers drift into while a judge trained on answer formats still says yes. Half of each judge batch
(``newest_share``) is the newest iteration's answers, so the judge's calibration keeps up with the policy. The
monitor reads the policy's answers only. ``eval_every`` evaluates the policy on held-out tasks with the verifier.

The env must report ``question`` and ``reference`` in the reset info and ``answer`` and ``verified`` in the info
of the step that answers (``AgentEnv/Search-World-Read-v0`` does).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from agentenv.errors import ConfigError, check_choice, check_range

REWARDS = ("p_yes", "verdict")


@dataclass
class CoTrainConfig:
    """Knobs of the judge in co-training (a recipe's ``cotrain:`` section)."""

    judge: str = "default"  # the judge's starting model: 'default', a folder (e.g. a trained P(yes) judge), a hub id
    lr: float = 5e-5
    steps: int = 8  # judge training steps after each policy iteration
    batch_size: int = 16
    train_layers: int | None = 8
    replay: int = 512  # the newest verified samples the judge trains on
    threshold: float = 0.5  # the judge accepts at P(yes) >= threshold
    reward: str = "p_yes"  # what the policy is paid: the judge's P(yes), or its verdict (1 at/above threshold)
    max_prompt_tokens: int = 384
    reference_positive: bool = True  # each question's reference answer joins the judge's data as a positive
    near_misses: int = 4  # wrong answers from the env's own documents per question, as negatives (0: none)
    format_misses: int = 4  # the reference in forms the verifier refuses ('2,367 m', 'in X'), as negatives (0: none)
    newest_share: float = 0.5  # of each judge batch, drawn from the newest iteration's answers (the rest: replay)
    eval_every: int = 0  # iterations between held-out evaluations of the policy (verifier-scored); 0: none

    def validate(self, prefix: str = "") -> None:
        check_range(f"{prefix}lr", self.lr, 1e-9, 1.0)
        check_range(f"{prefix}steps", self.steps, 0, 100_000, integer=True)
        check_range(f"{prefix}batch_size", self.batch_size, 1, 4096, integer=True)
        if self.train_layers is not None:
            check_range(f"{prefix}train_layers", self.train_layers, 1, 10_000, integer=True)
        check_range(f"{prefix}replay", self.replay, 1, 10_000_000, integer=True)
        check_range(f"{prefix}threshold", self.threshold, 0.0, 1.0)
        check_choice(f"{prefix}reward", self.reward, REWARDS)
        check_range(f"{prefix}max_prompt_tokens", self.max_prompt_tokens, 16, 1_000_000, integer=True)
        check_range(f"{prefix}near_misses", self.near_misses, 0, 100, integer=True)
        check_range(f"{prefix}format_misses", self.format_misses, 0, 100, integer=True)
        check_range(f"{prefix}newest_share", self.newest_share, 0.0, 1.0)
        check_range(f"{prefix}eval_every", self.eval_every, 0, integer=True)


@dataclass(frozen=True)
class Judged:
    """One answer as the judge and the verifier saw it."""

    question: str
    reference: str
    answer: str
    verified: float
    p_yes: float

    @property
    def label(self) -> int:
        return int(self.verified >= 1.0)


class CoTrainer:
    """The judge side of co-training: scores answers for :class:`JudgedReward`, keeps the verified samples, reports
    the monitor after each iteration and trains the judge on the replay window."""

    def __init__(self, config: CoTrainConfig, *, num_threads: int | None = None, seed: int = 0):
        from agentenv.policies.verdict import OnlineVerdict

        config.validate()
        self.config = config
        self.learner = OnlineVerdict(config.judge, lr=config.lr, batch_size=config.batch_size,
                                     train_layers=config.train_layers, max_prompt_tokens=config.max_prompt_tokens,
                                     num_threads=num_threads, seed=seed)  # fmt: skip
        self.fresh: list[Judged] = []
        self.constructed: dict[tuple[str, str], Judged] = {}  # Cooper's per-question positive and negatives
        self.replay: collections.deque[Judged] = collections.deque(maxlen=config.replay)
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def wrap(self, env: gym.Env) -> JudgedReward:
        return JudgedReward(env, self)

    def pay(self, question: str, reference: str, answer: str, verified: float) -> tuple[float, float]:
        """The reward for ``answer`` and the judge's P(yes); the sample is kept for the monitor and the judge."""
        from agentenv.envs.judge.data import JudgeCase

        case = JudgeCase(question=question, reference=reference, response=answer, label=int(verified >= 1.0),
                         category="policy", id="policy")  # fmt: skip
        p = self.learner.p_yes([case])[0]
        with self._lock:
            self.fresh.append(Judged(question, reference, answer, float(verified), p))
        reward = p if self.config.reward == "p_yes" else float(p >= self.config.threshold)
        return reward, p

    def meet(self, question: str, reference: str, near_misses: Sequence[str]) -> None:
        """A question the policy is about to answer: its reference (positive) and the env's near misses (negatives,
        verified wrong by the env) become judge training data, once per question and answer."""
        samples = [Judged(question, reference, reference, 1.0, math.nan)] if self.config.reference_positive else []
        samples += [Judged(question, reference, wrong, 0.0, math.nan) for wrong in near_misses]
        with self._lock:
            for sample in samples:
                self.constructed.setdefault((sample.question, sample.answer), sample)

    def after_iteration(self, iteration: int) -> dict[str, Any]:
        """The monitor on this iteration's answers (as the judge paid them), then the judge's training steps: each
        batch ``newest_share`` from these answers, the rest from the replay window (constructed data included)."""
        with self._lock:
            fresh, self.fresh = self.fresh, []
            constructed, self.constructed = list(self.constructed.values()), {}
        t = self.config.threshold
        accepted = [s.p_yes >= t for s in fresh]
        labels = [s.label for s in fresh]
        negatives = sum(1 for y in labels if not y)
        positives = len(labels) - negatives
        row: dict[str, Any] = {
            "iteration": iteration,
            "answers": len(fresh),
            "verified_success": sum(labels) / len(labels) if labels else math.nan,
            "judge_reward": sum(s.p_yes for s in fresh) / len(fresh) if fresh else math.nan,
            "disagreement": sum(a != bool(y) for a, y in zip(accepted, labels, strict=True)) / len(fresh)
            if fresh
            else math.nan,
            "judge_fpr": sum(a and not y for a, y in zip(accepted, labels, strict=True)) / negatives
            if negatives
            else math.nan,
            "judge_fnr": sum(not a and y for a, y in zip(accepted, labels, strict=True)) / positives
            if positives
            else math.nan,
        }
        if positives and negatives:  # threshold-free: does the judge rank the right answers above the wrong ones?
            from agentenv.rewards.antihack import auroc

            row["judge_auroc"] = auroc([s.p_yes for s in fresh], labels)
        fooled = [s for s in fresh if s.p_yes >= t and not s.label]
        row["fooled"] = [{"answer": s.answer[:120], "reference": s.reference, "p_yes": round(s.p_yes, 3)}
                         for s in sorted(fooled, key=lambda s: -s.p_yes)[:3]]  # fmt: skip
        rejected = [s for s in fresh if s.p_yes < t and s.label]  # right answers the judge refused: its lag shows
        row["rejected"] = [{"answer": s.answer[:120], "reference": s.reference, "p_yes": round(s.p_yes, 3)}
                           for s in sorted(rejected, key=lambda s: s.p_yes)[:3]]  # fmt: skip
        row["constructed"] = len(constructed)
        self.replay.extend(constructed + fresh)
        replayed = list(self.replay)[: max(0, len(self.replay) - len(fresh))]  # the newest answers are drawn apart
        older, newest = _cases(replayed), _cases(fresh)
        if len({c.label for c in older + newest}) == 2:  # one label only teaches the judge to say it always
            row.update(self.learner.fit(older, self.config.steps, newest=newest, newest_share=self.config.newest_share))
        else:
            row.update({"judge_loss": math.nan, "judge_steps": 0})
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}  # JSON: null
        self.history.append(row)
        return row

    def save(self, path: str | Path) -> str:
        return self.learner.save(path)


def _cases(samples: Sequence[Judged]) -> list[Any]:
    """Verified samples as the judge trainer's labelled cases."""
    from agentenv.envs.judge.data import JudgeCase

    return [JudgeCase(question=s.question, reference=s.reference, response=s.answer, label=s.label,
                      category="policy", id=f"policy-{k}") for k, s in enumerate(samples)]  # fmt: skip


class JudgedReward(gym.Wrapper):
    """Pays the judge's reward for an answer instead of the env's (which stays in ``info["verified"]``)."""

    def __init__(self, env: gym.Env, cotrainer: CoTrainer):
        super().__init__(env)
        self.cotrainer = cotrainer
        self._question = self._reference = ""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        if "question" not in info or "reference" not in info:
            raise ConfigError(f"co-training needs an env that reports 'question' and 'reference' at reset (such as "
                              f"AgentEnv/Search-World-Read-v0); {self.env.spec.id if self.env.spec else self.env} "
                              "does not")  # fmt: skip
        self._question, self._reference = str(info["question"]), str(info["reference"])
        misses: list[str] = []
        for name, k in (("near_misses", self.cotrainer.config.near_misses),
                        ("format_misses", self.cotrainer.config.format_misses)):  # fmt: skip
            offer = getattr(self.env.unwrapped, name, None)
            misses += offer(k) if k and callable(offer) else []
        self.cotrainer.meet(self._question, self._reference, misses)
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if "verified" in info and "answer" in info and not info.get("invalid_action"):
            paid, p = self.cotrainer.pay(self._question, self._reference, str(info["answer"]), float(info["verified"]))
            info = {**info, "judge_p_yes": p, "verifier_reward": reward}
            reward = paid
        return observation, reward, terminated, truncated, info


def plot_monitor(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """``cotrain.png``: the judge's disagreement with the verifier and the policy's verified success, per iteration."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("disagreement", "judge vs verifier disagreement"), ("verified_success", "verified success"),
                       ("judge_fpr", "judge FPR"), ("judge_auroc", "judge AUROC"),
                       ("held_out_success", "held-out success (verifier)")):  # fmt: skip
        points = [(row["iteration"], row[key]) for row in history if row.get(key) is not None]
        if points:  # held-out success exists only where the run evaluated
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel("RL iteration")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("policy-judge co-training: the hacking monitor")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
