"""The P(yes) verdict trainer: it optimises what PointwiseJudge reads, and its folder is a judge."""

import itertools
import json
import random

import pytest

from agentenv import ConfigError
from agentenv.envs.judge.data import build_cases, save_cases
from agentenv.models import tiny_model
from agentenv.policies.verdict import VerdictConfig, auroc, train_verdict
from agentenv.rewards.antihack import resolve_judge
from agentenv.rewards.judges import LocalLM, PointwiseJudge

WORDS = ["Yes", "No", "yes", "no", "Question", "Reference", "answer", "Response", "correct", "the", "is", "a"]


def brute_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_matches_the_pairwise_definition_with_ties():
    rng = random.Random(0)
    for _ in range(20):
        scores = [rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in range(30)]
        labels = [rng.randint(0, 1) for _ in range(30)]
        if 0 < sum(labels) < 30:
            assert auroc(scores, labels) == pytest.approx(brute_auroc(scores, labels))
    assert auroc([0.9, 0.1], [1, 0]) == 1.0 and auroc([0.1, 0.9], [1, 0]) == 0.0


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_model(seed=0, texts=[" ".join(WORDS)] * 50 + ["The answer is four. It is not London."] * 5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cases():
    all_cases = build_cases(world=12, household=4, master_keys=2)
    return [c for c in all_cases if c.split == "train" and len(c.response) < 60][:24]


def test_training_fits_the_cases_and_the_folder_is_the_judge(tiny_folder, cases, tmp_path):
    config = VerdictConfig(lr=3e-3, epochs=8, batch_size=8, train_layers=None, seed=0, max_prompt_tokens=160)
    result = train_verdict(cases, cases, model=str(tiny_folder), output_dir=tmp_path, config=config)
    first, best = result.history[0], result.best
    assert best["auroc"] > max(0.9, first["auroc"]), result.history  # it learns what it is shown
    assert result.model_dir and (tmp_path / "verdict.json").is_file()
    assert json.loads((tmp_path / "verdict.json").read_text())["best"]["auroc"] == best["auroc"]

    judge = PointwiseJudge(LocalLM(result.model_dir), max_prompt_tokens=config.max_prompt_tokens)
    judged = [c for c in cases if c.response.strip()]  # the judge scores empty responses 0 without the model
    p_yes = [judge(c.sample()).value for c in judged]
    assert auroc(p_yes, [c.label for c in judged]) == pytest.approx(best["auroc"], abs=0.02)
    right = [p for p, c in zip(p_yes, judged, strict=True) if c.label]
    assert sum(right) / len(right) == pytest.approx(
        best["mean_p_yes_correct"], abs=2e-3
    )  # padding moves the last digits
    audited = resolve_judge(f"model:{result.model_dir}")  # what `agentenv judge-audit --judge model:DIR` uses
    assert audited(cases[0].sample()).value == pytest.approx(p_yes[0], abs=1e-6)


def test_training_the_top_layers_only_leaves_the_rest_untouched(tiny_folder, cases, tmp_path):
    import torch

    from agentenv.models import load_model

    before = load_model(str(tiny_folder))[0].state_dict()
    config = VerdictConfig(lr=1e-3, epochs=1, batch_size=8, train_layers=1)
    result = train_verdict(cases[:16], cases[:16], model=str(tiny_folder), output_dir=tmp_path, config=config)
    after = load_model(result.model_dir)[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.norm")) for k in changed), sorted(changed)


def test_bad_knobs_and_empty_data_are_config_errors(tiny_folder, cases):
    with pytest.raises(ConfigError, match="lr="):
        VerdictConfig(lr=0)
    with pytest.raises(ConfigError, match="lr="):
        VerdictConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match="train_layers="):
        VerdictConfig(train_layers=0)
    with pytest.raises(ConfigError, match="no training cases"):
        train_verdict([], model=str(tiny_folder))


def test_judge_audit_reads_a_model_folder_and_rejects_a_missing_one(tiny_folder, cases, tmp_path):
    from typer.testing import CliRunner

    from agentenv.cli import app

    path = save_cases(cases[:8], tmp_path / "cases.jsonl")
    result = CliRunner().invoke(app, ["judge-audit", "--judge", f"model:{tiny_folder}", "--cases", str(path)])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output
    with pytest.raises(ConfigError, match="no model folder"):
        resolve_judge(f"model:{tmp_path}/nothing/here")
    with pytest.raises(ConfigError, match="openai:http"):
        resolve_judge("openai:localhost:8000")
