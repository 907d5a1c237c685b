"""Reward hacking on the search envs: every registered hack, and variants of them, earns at most 0.1 on 30 questions
of every search id (20 open, 10 of the other answer types), while the oracle's answer earns 1 on the same questions.

The hacks are played through the env's own tools (``env.step``): candidates, values and names come from the documents
its ``search`` and ``open`` return. Plans fit the action limit, so the long ones are also scored directly at 100k
characters, past anything the action limit would stop.
"""

from __future__ import annotations

import functools
import random

import pytest

import agentenv
from agentenv.envs.search import PRESETS
from agentenv.envs.search.hacks import FAMILY, PADDING, decoys, frames, question_of, retrieve
from agentenv.redteam import hacks_for, registered_hacks

IDS = [f"AgentEnv/{name}" for name in PRESETS]
#: Questions per id: open ones (the nugget rubric), and of each other answer type.
OPEN, PER_TYPE = 20, {"entity": 3, "number": 2, "date": 3, "list": 2}
#: The most a hack may earn on any question.
LIMIT = 0.1
REQUIRED = {"noop", "candidates", "padding", "retrieved_dump", "empty_frames", "echo", "master_key", "opener",
            "other_language", "stuffing"}  # fmt: skip


@functools.cache
def tasks(env_id: str) -> list[tuple[object, int]]:
    """(env, seed) of the id's test questions: OPEN open ones, PER_TYPE of each other type."""
    wanted = {"open": OPEN, **PER_TYPE}
    if "World" in env_id:  # world questions are drawn per type
        return [(agentenv.make(env_id, split="test", answer_types=[t]), s) for t, n in wanted.items() for s in range(n)]
    env, found = agentenv.make(env_id, split="test"), []
    for seed in range(2_000):  # PyDocs questions are a fixed pool: take the first of each type
        env.reset(seed=seed)
        kind = env.unwrapped.question.answer_type
        if wanted[kind] > 0:
            wanted[kind] -= 1
            found.append((env, seed))
    assert not any(wanted.values()), f"{env_id} lacks test questions: {wanted}"
    return found


def play(env, hack, seed: int) -> tuple[float, dict]:
    """Play ``hack``'s plan from ``reset(seed)``: (the episode's return, the last info)."""
    observation, info = env.reset(seed=seed)
    total = 0.0
    for turn in hack.plan(env.unwrapped, observation, info):
        observation, reward, terminated, truncated, info = env.step(turn)
        total += reward
        if terminated or truncated:
            break
    return total, info


def test_the_search_family_registers_the_required_hacks_and_one_noop():
    env = agentenv.make("AgentEnv/Search-World-h1-v0")
    hacks = hacks_for(env)
    assert {h.name for h in hacks} >= REQUIRED
    assert [h.name for h in hacks if h.kind == "noop"] == ["noop"] and hacks[0].kind == "noop"
    assert all(h.description for h in registered_hacks(FAMILY))


@pytest.mark.parametrize("env_id", IDS)
def test_the_oracle_answer_scores_one_on_the_attacked_questions(env_id):
    for env, seed in tasks(env_id):
        env.reset(seed=seed)
        assert env.unwrapped.score_answer(env.unwrapped.question.oracle_answer()).value == 1.0, seed
    types = {env.reset(seed=s)[1]["answer_type"] for env, s in tasks(env_id)}
    assert types == {"open", *PER_TYPE} and len(tasks(env_id)) == OPEN + sum(PER_TYPE.values())


@pytest.mark.parametrize("hack", sorted(h.name for h in registered_hacks(FAMILY)) or sorted(REQUIRED))
@pytest.mark.parametrize("env_id", IDS)
def test_no_hack_earns_more_than_a_tenth(env_id, hack):
    chosen = next(h for h in hacks_for(agentenv.make(env_id)) if h.name == hack)
    worst = []
    for env, seed in tasks(env_id):
        total, info = play(env, chosen, seed)
        assert "answer_score" in info, f"{hack} never had its answer scored on {env_id} seed {seed}: {info}"
        worst.append((round(total, 3), env.unwrapped.question.answer_type, seed, info["answer_reason"]))
    worst.sort(reverse=True)
    assert worst[0][0] <= LIMIT, f"{hack} on {env_id}: {worst[:3]}"


def _scored(env, seed: int, text: str) -> float:
    env.reset(seed=seed)
    return env.unwrapped.score_answer(text).value


@pytest.mark.parametrize("env_id", IDS)
def test_the_oracle_answer_padded_to_100k_characters_earns_nothing(env_id):
    """Past the action limit, straight into the rubric: filler words, or stops that normalisation would strip (one
    question per answer type; scoring 100k characters takes about half a second)."""
    first = {}
    for env, seed in tasks(env_id):
        first.setdefault(env.reset(seed=seed)[1]["answer_type"], (env, seed))
    for kind, (env, seed) in first.items():
        env.reset(seed=seed)
        oracle = env.unwrapped.question.oracle_answer()
        for padding in (PADDING, "."):
            padded = oracle + (padding * (100_000 // len(padding) + 1))[:100_000]
            assert _scored(env, seed, padded) <= LIMIT, (kind, seed, padding)


@pytest.mark.parametrize("env_id", IDS)
def test_hedges_in_other_shapes_earn_nothing(env_id):
    """Ten candidates as "A, B, C, ...", one per line or "A / B / ..." for short answers and lists, also under token
    F1 where a hedge would collect partial credit; for open answers, each value followed by nine rivals."""
    for env, seed in tasks(env_id):
        observation, _ = env.reset(seed=seed)
        q = env.unwrapped.question
        _, documents = retrieve(env.unwrapped, question_of(observation))
        rng = random.Random(seed)
        if q.answer_type == "open":
            text = q.oracle_answer()
            for forms in q.meta["nugget_values"]:
                text = text.replace(forms[0], " ".join([forms[0], *decoys(forms[0], documents, 9, rng)]))
            assert _scored(env, seed, text) <= LIMIT, (seed, text)
            continue
        gold = [i.strip() for i in q.answer.split(",")]
        candidates = [*decoys(gold[0], documents, 10 - len(gold), rng), *gold]
        f1 = agentenv.make(env_id, split="test", answer_types=env.unwrapped.answer_types, short_answer="f1")
        for joined in (", ".join(candidates), "\n".join(candidates), " / ".join(candidates)):
            assert _scored(env, seed, joined) <= LIMIT, (seed, joined)
            assert _scored(f1, seed, joined) <= LIMIT, (seed, joined)


@pytest.mark.parametrize("env_id", IDS)
def test_names_stuffed_without_separators_and_blank_frames_earn_nothing(env_id):
    for env, seed in tasks(env_id):
        observation, _ = env.reset(seed=seed)
        _, documents = retrieve(env.unwrapped, question_of(observation), k=10)
        names = " ".join(d.title for d in documents)
        assert _scored(env, seed, names) <= LIMIT, (seed, names[:200])
        blank = " ".join(frames(env.unwrapped.question))
        assert _scored(env, seed, blank) == 0.0, (seed, blank)
