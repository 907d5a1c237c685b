"""The judges' verification data: labels known by construction, checked against the envs' own rule verifiers."""

import pytest

from agentenv import ConfigError
from agentenv.envs.judge.data import (
    MASTER_KEY_CATEGORIES,
    build_cases,
    cases_of,
    household_items,
    load_judge_cases,
    number_words,
    pairwise_cases,
    save_cases,
    summary,
    world_items,
)
from agentenv.envs.search.env import answer_rubric
from agentenv.rewards.antihack import load_cases
from agentenv.rewards.base import Sample


@pytest.fixture(scope="module")
def cases():
    return build_cases(world=120, household=40, swe=2, episodes=1)


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (7, "seven"), (42, "forty-two"), (100, "one hundred"),
     (1882, "one thousand eight hundred eighty-two"),
     (16_698_000, "sixteen million six hundred ninety-eight thousand"), (2_000_000_001, "two billion one")],
)  # fmt: skip
def test_number_words(n, words):
    assert number_words(n) == words


def test_number_words_rejects_what_it_cannot_say():
    with pytest.raises(ConfigError, match="n="):
        number_words(-1)


def test_every_source_gives_both_labels_and_the_master_key_family(cases):
    s = summary(cases)
    assert set(s["by_source"]) == {"world", "household", "swe", "episodes"}
    assert s["by_label"][0] > s["by_label"][1] > 0
    for category in MASTER_KEY_CATEGORIES:
        assert s["by_category"].get(category, 0) > 0, category
    for fmt in ("words", "boxed", "separators", "case", "preamble", "reordered"):
        assert s["by_category"].get(f"correct:{fmt}", 0) > 0, fmt
    for kind in ("wrong_value", "close_number", "partial_list", "hedged", "negated", "near_name", "wrong_number"):
        assert s["by_category"].get(f"wrong:{kind}", 0) > 0, kind


def test_the_split_is_by_question_and_the_test_split_is_not_empty(cases):
    split_of: dict[str, str] = {}
    for case in cases:
        assert split_of.setdefault(case.group_id, case.split) == case.split, case.id
    assert {"train", "validation", "test"} <= set(split_of.values())
    assert len({c.id for c in cases}) == len(cases)


def test_building_twice_gives_the_same_cases():
    assert (
        summary(build_cases(world=30, household=10))["fingerprint"]
        == summary(build_cases(world=30, household=10))["fingerprint"]
    )


def test_world_labels_agree_with_the_search_envs_rule_verifier():
    """Plain and alias positives pass the env's rubric; every wrong answer and master key fails it (a list answer
    that is partial or padded gets the rubric's partial credit, never full credit: the judge calls it wrong)."""
    checked = 0
    for item in world_items(60, seed=0):
        rubric = answer_rubric(item.answer_type)
        for case in cases_of(item):
            items = [i.strip() for i in case.reference.split(",")] if item.answer_type == "list" else []
            aliases = [text for fmt, text in item.positives if fmt == "alias"]
            metadata = {"references": [case.reference, *aliases], "items": items}
            sample = Sample(response=case.response, prompt=case.question, reference=case.reference, metadata=metadata)
            score = rubric(sample).value
            if case.label == 1 and case.category in ("correct:plain", "correct:alias"):
                assert score == 1.0, case
                checked += 1
            if case.label == 0:
                assert score < (1.0 if item.answer_type == "list" else 0.5), case
                checked += 1
    assert checked > 500


def test_household_near_misses_name_another_receptacle():
    items = list(household_items(20, seed=0))
    assert len(items) == 20
    for item in items:
        for kind, text in item.negatives:
            if kind in ("wrong_receptacle", "wrong_number"):
                assert text != item.reference and text.rsplit(" ", 1)[-1].isdigit()
        assert all(item.reference.lower() in text.lower() for _, text in item.positives)


def test_episode_answers_are_labelled_by_the_env_reward(cases):
    episode = [c for c in cases if c.source == "episodes"]
    assert any(c.label == 1 and c.category == "correct:policy:oracle" for c in episode)
    assert any(c.label == 0 and c.category == "wrong:policy:stuffing" for c in episode)


def test_pairs_come_in_both_orders(cases):
    pairs = pairwise_cases(cases)
    by_pair: dict[str, list[dict]] = {}
    for p in pairs:
        by_pair.setdefault(p["pair_id"], []).append(p)
    assert len(by_pair) > 100
    for two in by_pair.values():
        ab, ba = sorted(two, key=lambda p: p["label"])
        assert (ab["label"], ba["label"]) == ("A", "B")
        assert ab["a"] == ba["b"] and ab["b"] == ba["a"] and ab["split"] == ba["split"]


def test_saved_cases_load_back_and_judge_audit_reads_them(cases, tmp_path):
    path = save_cases(cases, tmp_path / "cases.jsonl")
    test = load_judge_cases(path, split="test")
    assert test and all(c.split == "test" for c in test)
    assert load_judge_cases(path) == cases
    audited = load_cases(path)  # the `agentenv judge-audit --cases` reader
    assert len(audited.cases) == len(cases)


def test_a_bad_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "reference": "r", "response": "x", "label": 1}\n{"label": 7}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        load_judge_cases(path)


def test_asking_for_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match="every source count is 0"):
        build_cases(world=0, household=0)
    with pytest.raises(ConfigError, match="world="):
        build_cases(world=-1)
