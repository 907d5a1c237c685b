"""Policy–judge co-training: the policy is paid the judge's reward, the judge learns from verified answers, and the
monitor compares the two (real reading env, real tiny models)."""

import json
import math

import pytest

import agentenv
from agentenv import ConfigError
from agentenv.models import tiny_model
from agentenv.policies.cotrain import CoTrainConfig, CoTrainer, Judged


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_model(seed=0, texts=["Yes No Question Reference answer Response correct the is a"] * 50)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_policy_is_paid_the_judges_reward_and_the_verifier_is_kept(tiny_folder):
    cotrainer = CoTrainer(CoTrainConfig(judge=str(tiny_folder), steps=2, batch_size=4))
    env = cotrainer.wrap(agentenv.make("AgentEnv/Search-World-Read-v0"))
    _, info = env.reset(seed=3)
    right = env.unwrapped.walkthrough()[0]
    _, reward, terminated, _, info = env.step(right)
    assert terminated and info["verified"] == 1.0 and info["verifier_reward"] == 1.0
    assert reward == info["judge_p_yes"] and 0.0 < reward < 1.0  # the judge's P(yes), not the verifier's 1.0
    env.reset(seed=4)
    _, reward, _, _, info = env.step(":")  # a master key: the verifier says 0, whatever the judge says
    assert info["verified"] == 0.0 and reward == info["judge_p_yes"]
    env.reset(seed=5)
    _, reward, _, _, info = env.step("x" * 600)  # an invalid turn (over the length limit) is not judged
    assert "judge_p_yes" not in info and len(cotrainer.fresh) == 2
    # Cooper's constructed data: each question met gives its reference (positive) and the env's near misses
    negatives = [s for s in cotrainer.constructed.values() if s.label == 0]
    positives = [s for s in cotrainer.constructed.values() if s.label == 1]
    assert len(positives) == 3 and all(s.answer == s.reference for s in positives)
    assert negatives and all(s.answer != s.reference for s in negatives)
    row = cotrainer.after_iteration(1)
    assert row["answers"] == 2 and row["constructed"] == len(positives) + len(negatives)  # the monitor: answers only
    assert len(cotrainer.replay) == 2 + row["constructed"] and not cotrainer.constructed


def test_near_misses_are_wrong_answers_the_documents_state():
    env = agentenv.make("AgentEnv/Search-World-Read-v0")
    assert env.unwrapped.near_misses() == []  # before reset
    kinds = 0
    for seed in range(8):
        observation, info = env.reset(seed=seed)
        misses = env.unwrapped.near_misses(6)
        assert misses and len(misses) <= 6 and info["reference"] not in misses
        for wrong in misses:
            assert " ".join(wrong.split()) in " ".join(observation.split())
            assert env.unwrapped.score_answer(wrong).value == 0.0
        answers = env.unwrapped.question.answers
        assert any(a in misses[0] for a in answers) and misses[0].endswith(".")  # the sentence frame comes first
        kinds += any(m[:1].isdigit() for m in misses) and any(m[:1].isalpha() for m in misses)
    assert kinds >= 2  # names and numbers both


def test_format_misses_are_the_reference_in_forms_the_verifier_refuses():
    env = agentenv.make("AgentEnv/Search-World-Read-v0")
    assert env.unwrapped.format_misses() == []  # before reset
    found: dict[str, list[str]] = {"unit": [], "separated": [], "misspelled": [], "ordinal": [], "sentence": []}
    for seed in range(40):
        _, info = env.reset(seed=seed)
        reference, answers = info["reference"], env.unwrapped.question.answers
        misses = env.unwrapped.format_misses(8)
        assert misses and len(misses) <= 8 and not set(misses) & set(answers)
        for wrong in misses:  # labelled by the verifier, never by assumption
            assert env.unwrapped.score_answer(wrong).value == 0.0
        digits = reference.replace(",", "")
        if info["answer_type"] == "number":
            found["unit"] += [m for m in misses if m.startswith(reference + " ") and not m.endswith(".")]
            if int(digits) >= 1000:
                found["separated"] += [m for m in misses if m.startswith(f"{int(digits):,} ")]
        if info["answer_type"] == "entity":
            found["misspelled"] += [m for m in misses if " " not in m and abs(len(m) - len(reference)) <= 2
                                    and m.lower() != reference.lower()]  # fmt: skip
        if info["answer_type"] == "date" and reference[:1].isdigit() and " " in reference:
            found["ordinal"] += [m for m in misses if m.split()[0][-2:] in ("st", "nd", "rd", "th")]
        found["sentence"] += [m for m in misses if m == f"The answer is {reference}."]
    assert all(found.values()), {kind: len(v) for kind, v in found.items()}


def test_a_form_the_verifier_accepts_is_no_format_miss():
    env = agentenv.make("AgentEnv/Search-World-Read-v0").unwrapped
    for seed in range(40):
        _, info = env.reset(seed=seed)
        digits = info["reference"].replace(",", "")
        if info["answer_type"] == "number" and int(digits) >= 1000:
            separated = f"{int(digits):,}"
            assert env.score_answer(separated).value == 1.0  # the thousands separator alone is accepted ...
            assert separated not in env.format_misses(20)  # ... so it is never offered as a negative
            return
    pytest.fail("no number of 1000 or more in 40 tasks")


def test_cotrain_adds_the_format_misses_as_negatives(tiny_folder):
    cotrainer = CoTrainer(CoTrainConfig(judge=str(tiny_folder), near_misses=0, format_misses=3, batch_size=4))
    env = cotrainer.wrap(agentenv.make("AgentEnv/Search-World-Read-v0"))
    env.reset(seed=2)
    negatives = [s.answer for s in cotrainer.constructed.values() if s.label == 0]
    assert negatives == env.unwrapped.format_misses(3) and len(negatives) == 3


def test_judge_batches_draw_their_newest_share_from_the_newest_answers():
    from random import Random

    from agentenv.policies.verdict import mixed_batch

    older, newest = range(100), range(100, 110)
    batch = mixed_batch(Random(0), older, newest, 16, 0.5)
    assert len(batch) == len(set(batch)) == 16 and sum(i >= 100 for i in batch) == 8
    assert sum(i >= 100 for i in mixed_batch(Random(0), older, newest, 16, 0.0)) == 0
    assert sorted(mixed_batch(Random(0), older, newest, 16, 1.0))[6:] == list(newest)  # 10 new, 6 old fill in
    assert sorted(mixed_batch(Random(0), range(3), newest, 16, 0.0)) == [*range(3), *newest]  # both run short


def test_the_online_judge_trains_on_replay_and_newest_answers(tiny_folder):
    from agentenv.envs.judge.data import JudgeCase
    from agentenv.policies.verdict import OnlineVerdict

    def case(response, label):
        return JudgeCase(question="q", reference="5", response=response, label=label, category="policy", id="c")

    learner = OnlineVerdict(str(tiny_folder), batch_size=4, num_threads=1)
    row = learner.fit([case("5", 1), case("6", 0)], 2, newest=[case("5 m", 0), case("5.", 1)], newest_share=0.5)
    assert row["judge_steps"] == 2 and math.isfinite(row["judge_loss"]) and learner.steps == 2
    assert learner.fit([], 1, newest=[case("5", 1), case("7", 0)])["judge_steps"] == 1  # newest only
    with pytest.raises(ConfigError, match="newest_share"):
        learner.fit([case("5", 1)], 1, newest_share=2.0)


def test_the_monitor_counts_disagreement_and_the_judge_trains_on_both_labels(tiny_folder):
    cotrainer = CoTrainer(CoTrainConfig(judge=str(tiny_folder), steps=3, batch_size=4, threshold=0.5))
    cotrainer.fresh = [Judged("q1", "5", "5", 1.0, 0.9), Judged("q2", "6", "7", 0.0, 0.8),
                       Judged("q3", "8", "8", 1.0, 0.2), Judged("q4", "9", ":", 0.0, 0.1)]  # fmt: skip
    row = cotrainer.after_iteration(1)
    assert row["disagreement"] == 0.5 and row["judge_fpr"] == 0.5 and row["judge_fnr"] == 0.5
    assert row["verified_success"] == 0.5 and row["judge_reward"] == pytest.approx(0.5)
    assert row["judge_auroc"] == 0.75  # 3 of the 4 (right, wrong) pairs ranked right: threshold-free
    assert row["fooled"] == [{"answer": "7", "reference": "6", "p_yes": 0.8}]  # paid, but wrong
    assert row["rejected"] == [{"answer": "8", "reference": "8", "p_yes": 0.2}]  # right, but refused
    assert row["judge_steps"] == 3 and math.isfinite(row["judge_loss"]) and cotrainer.learner.steps == 3
    cotrainer.fresh = [Judged("q5", "1", "2", 0.0, 0.1)]
    cotrainer.replay.clear()
    row = cotrainer.after_iteration(2)  # one label only: the judge would learn to say it always; no steps
    assert row["judge_steps"] == 0 and cotrainer.learner.steps == 3
    assert row["judge_fnr"] is None and row["judge_loss"] is None  # undefined rates are null, not NaN, in JSON
    assert [r["iteration"] for r in cotrainer.history] == [1, 2]


def test_a_cotrain_recipe_runs_and_plots_the_monitor(tiny_folder, tmp_path):
    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import run_recipe

    recipe = {
        "name": "tiny-cotrain",
        "env": {"id": "AgentEnv/Search-World-Read-v0"},
        "model": {"name": str(tiny_folder), "num_threads": 1},
        "rl": {"algorithm": "grpo", "iterations": 2, "episodes": 4, "group_size": 2, "train_tasks": 16,
               "epochs": 1, "minibatches": 1, "lr": 1e-4, "micro_batch_size": 4, "max_new_tokens": 4,
               "max_context_tokens": 1024, "num_envs": 2},
        "cotrain": {"judge": str(tiny_folder), "steps": 2, "batch_size": 4, "eval_every": 1},
        "eval": {"episodes": 2, "max_new_tokens": 4, "num_envs": 2, "before": False},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False},
    }  # fmt: skip
    results = run_recipe(load_recipe(recipe))
    rows = results["cotrain"]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["answers"] >= 1 for r in rows)
    held_out = results["evaluations"]["iteration 1"]  # eval_every: the verifier on held-out tasks mid-run
    assert rows[0]["held_out_success"] == held_out["success_rate"] and "held_out_success" not in rows[1]
    out = tmp_path / "run"
    assert (out / "cotrain.png").is_file() and (out / "judge" / "config.json").is_file()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged if r.get("stage") == "cotrain"] == [1, 2]
    assert json.loads((out / "results.json").read_text())["cotrain"] == rows


def test_cotrain_recipes_are_checked():
    from agentenv.recipes.config import load_recipe

    base = load_recipe("recipes/cotrain-reading.yaml").to_dict()
    assert base["cotrain"]["judge"] == "default"
    with pytest.raises(ConfigError, match="needs an 'rl' section"):
        load_recipe({**base, "rl": None, "sft": {"episodes": 2}})
    with pytest.raises(ConfigError, match=r"cotrain\.reward="):
        load_recipe(base, ["cotrain.reward=money"])
    with pytest.raises(ConfigError, match=r"cotrain\.judge="):
        load_recipe(base, ["cotrain.judge=/no/such/folder"])
    with pytest.raises(ConfigError, match=r"cotrain\.near_misses="):
        load_recipe(base, ["cotrain.near_misses=-1"])
    with pytest.raises(ConfigError, match=r"cotrain\.format_misses="):
        load_recipe(base, ["cotrain.format_misses=-1"])
    with pytest.raises(ConfigError, match=r"cotrain\.newest_share="):
        load_recipe(base, ["cotrain.newest_share=1.5"])
