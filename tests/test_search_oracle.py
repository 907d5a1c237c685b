"""The oracle's answer scores 1.0 on every question: all 6,999 PyDocs questions (punctuation defaults such as ``''``
included) and thousands of procedurally drawn world questions per hop count, over the train, validation and test
seeds. A reward that refuses its own reference teaches nothing; one that pays it only partly caps every policy."""

from __future__ import annotations

import pytest

import agentenv
from agentenv.core import SPLITS, task_seeds
from tests.conftest import pydocs_missing

#: World questions per hop count and split (all answer types), and open ones on top (the nugget rubric's case).
WORLD_SEEDS, WORLD_OPEN_SEEDS = 300, 100


def _oracle_misses(env, seeds) -> tuple[list[str], list[tuple]]:
    """The ids of the questions the seeds drew, and (seed, type, score, reason) of each whose oracle answer scores
    below 1."""
    ids, misses = [], []
    for seed in seeds:
        env.reset(seed=seed)
        question = env.unwrapped.question
        score = env.unwrapped.score_answer(question.oracle_answer())
        ids.append(question.id)
        if score.value != 1.0:
            misses.append((seed, question.answer_type, round(score.value, 3), score.reason[:120]))
    return ids, misses


@pytest.mark.parametrize("hops", [1, 2, 3, 4])
def test_the_oracle_answer_scores_one_on_world_questions(hops):
    ids, misses = [], []
    for answer_types in (None, ["open"]):
        for split in SPLITS:
            env = agentenv.make(f"AgentEnv/Search-World-h{hops}-v0", split=split, answer_types=answer_types)
            seen, missed = _oracle_misses(env, range(WORLD_OPEN_SEEDS if answer_types else WORLD_SEEDS))
            ids, misses = ids + seen, misses + missed
            env.close()
    assert len(ids) == 3 * (WORLD_SEEDS + WORLD_OPEN_SEEDS)
    assert not misses, f"{len(misses)}/{len(ids)} oracle answers score below 1: {misses[:5]}"


def test_the_oracle_answer_scores_one_on_every_pydocs_question():
    if why := pydocs_missing():
        pytest.skip(f"python3.11-doc is not installed: {why}")
    ids, misses = [], []
    for split in SPLITS:
        env = agentenv.make("AgentEnv/Search-PyDocs-v0", split=split)
        env.reset(seed=0)
        pool = len(env.unwrapped._questions[split])  # reset(seed=i) plays question i of the split's pool
        seen, missed = _oracle_misses(env, range(pool))
        ids, misses = ids + seen, misses + missed
        env.close()
    assert len(ids) == len(set(ids)) > 6_900  # every question, once
    assert not misses, f"{len(misses)}/{len(ids)} oracle answers score below 1: {misses[:5]}"


def test_world_seeds_beyond_the_first_draw_new_questions():
    """The sample above is not one question repeated: seeds of a split draw distinct questions."""
    env = agentenv.make("AgentEnv/Search-World-h2-v0", split="validation")
    ids = {env.reset(seed=s)[1]["question_id"] for s in range(200)}
    assert len(ids) == 200 and task_seeds("validation", 1)[0] > 0
