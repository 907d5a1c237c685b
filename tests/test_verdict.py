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


class RuleBackend:
    """A judge backend that answers the pairwise prompt by a rule on its text (not a model): ``rule(a, b, reference)``
    gives P(yes) that Response A is better."""

    context_tokens = 4096

    def __init__(self, rule):
        self.rule = rule

    def count_tokens(self, chat):
        return sum(len(m["content"].split()) for m in chat)

    def generate(self, chats, **kw):
        raise NotImplementedError("a pairwise verdict reads P(yes) only")

    def p_yes(self, chats):
        from agentenv.rewards.judges import Verdict

        out = []
        for chat in chats:
            text = chat[-1]["content"]
            reference = text.split("Reference answer: ", 1)[1].split("\n", 1)[0]
            a = text.split("Response A: ", 1)[1].split("\n\nResponse B: ", 1)[0]
            b = text.split("Response B: ", 1)[1].split("\n\nIs Response A", 1)[0]
            out.append(Verdict(self.rule(a, b, reference)))
        return out


PAIRS = [
    {"question": f"Q{i}?", "reference": f"ans{i}", "a": f"ans{i}" if i % 2 else "wrong", "b": "wrong" if i % 2 else
     f"ans{i}", "label": "A" if i % 2 else "B", "pair_id": f"q{i}/pair0", "category": "wrong:x" if i < 4 else "mk"}
    for i in range(8)
]  # fmt: skip


def test_pairwise_audit_counts_errors_and_position_flips():
    from agentenv.rewards.antihack import audit_pairwise
    from agentenv.rewards.judges import PairwiseJudge

    def audit_with(rule):
        return audit_pairwise(PairwiseJudge(RuleBackend(rule)), PAIRS + PAIRS[:3], batch_size=3)  # repeats count once

    reads = audit_with(lambda a, b, ref: 0.9 if a == ref else 0.1)
    assert (reads.pairs, reads.error_rate, reads.inconsistency_rate) == (8, 0.0, 0.0)
    always_a = audit_with(lambda a, b, ref: 0.8)  # position bias: "A is better" whatever A is
    assert (always_a.error_rate, always_a.inconsistency_rate) == (1.0, 1.0)  # a tie is no preference: an error
    backwards = audit_with(lambda a, b, ref: 0.1 if a == ref else 0.9)
    assert (backwards.error_rate, backwards.inconsistency_rate) == (1.0, 0.0)
    half = audit_with(lambda a, b, ref: 0.9 if a == ref and ref in ("ans1", "ans3") else 0.4)
    assert half.by_category["wrong:x"] == {"pairs": 4, "error_rate": 0.5, "inconsistency_rate": 0.5}
    assert half.by_category["mk"]["error_rate"] == 1.0
    assert half.to_dict()["error_rate"] == 6 / 8


def test_category_auroc_ranks_each_category_against_the_other_label():
    from agentenv.rewards.antihack import AuditCase, AuditReport, CaseResult, ErrorRates

    def result(category, label, score):
        case = AuditCase(question="q", reference="r", response=f"{category}{score}", label=label, category=category)
        return CaseResult(case, score)

    results = [result("right", 1, 0.9), result("right", 1, 0.6), result("keys", 0, 0.1), result("keys", 0, 0.2),
               result("near", 0, 0.7), result("near", 0, 0.5)]  # fmt: skip
    report = AuditReport("j", 0.5, ErrorRates.of(results, 0.5), {c: ErrorRates() for c in ("right", "keys", "near")},
                         {}, results)  # fmt: skip
    aucs = report.category_auroc()
    assert aucs["keys"] == 1.0  # every correct answer outscores every master key
    assert aucs["near"] == 0.75  # 0.9 beats both, 0.6 beats 0.5 only
    assert aucs["right"] == pytest.approx(7 / 8)
    assert report.to_dict()["category_auroc"]["near"] == 0.75


def test_pairwise_training_learns_and_the_folder_is_a_pairwise_judge(tiny_folder, cases, tmp_path):
    from typer.testing import CliRunner

    from agentenv.cli import app
    from agentenv.envs.judge.data import pairwise_cases
    from agentenv.rewards.antihack import audit_pairwise
    from agentenv.rewards.judges import PairwiseJudge

    pairs = pairwise_cases(cases)
    assert {p["label"] for p in pairs} == {"A", "B"} and len(pairs) >= 12
    config = VerdictConfig(lr=3e-3, epochs=30, batch_size=8, train_layers=None, seed=0, max_prompt_tokens=200)
    result = train_verdict(pairs, pairs, model=str(tiny_folder), output_dir=tmp_path, config=config, mode="pairwise")
    assert result.best["auroc"] > max(0.9, result.history[0]["auroc"]), result.history

    judge = resolve_judge(f"model:{result.model_dir}", "pairwise")
    assert isinstance(judge, PairwiseJudge)
    before = audit_pairwise(PairwiseJudge(LocalLM(str(tiny_folder)), max_prompt_tokens=200), pairs)
    after = audit_pairwise(PairwiseJudge(LocalLM(result.model_dir), max_prompt_tokens=200), pairs)
    assert after.error_rate < before.error_rate or after.error_rate == 0.0, (before, after)

    path = save_cases(pairs, tmp_path / "pairs.jsonl")
    out = CliRunner().invoke(app, ["judge-audit", "--pairwise", "--judge", f"model:{result.model_dir}",
                                   "--cases", str(path), "-o", str(tmp_path / "report.json")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "inconsistency" in out.output
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["pairs"] == after.pairs and saved["error_rate"] == pytest.approx(after.error_rate, abs=0.05)
    with pytest.raises(ConfigError, match="label must be 'A' or 'B'"):
        train_verdict([{**pairs[0], "label": "C"}], model=str(tiny_folder), mode="pairwise")


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_a_verdict_recipe_trains_and_audits_a_judge(tiny_folder, tmp_path, mode):
    from typer.testing import CliRunner

    from agentenv.cli import app
    from agentenv.recipes.config import load_recipe
    from agentenv.recipes.run import run_recipe

    recipe = {
        "name": "tiny-judge",
        "model": {"name": str(tiny_folder), "num_threads": 1},
        "verdict": {"mode": mode, "world": 12, "household": 4, "master_keys": 2, "epochs": 1, "batch_size": 8,
                    "lr": 1e-3, "validation": 16, "max_prompt_tokens": 200, "train_layers": 1},
        "output": {"dir": str(tmp_path / "run")},
    }  # fmt: skip
    results = run_recipe(load_recipe(recipe))
    out = tmp_path / "run"
    saved = json.loads((out / "results.json").read_text())
    assert saved["mode"] == mode and saved["training"]["steps"] >= 1
    assert set(saved) >= {"untrained", "trained", "data", "seconds"} and results["trained"] == saved["trained"]
    if mode == "pointwise":
        test = saved["trained"]["test"]
        assert test["cases"] == saved["data"]["by_split"]["test"] and 0.0 <= test["auroc"] <= 1.0
        assert set(saved["goal_met"]) == {"auroc", "master_key_fpr", "format_fnr"}
        assert "AUROC (test)" in (out / "report.md").read_text()
    else:
        assert saved["trained"]["pairs"] > 0 and 0.0 <= saved["trained"]["inconsistency_rate"] <= 1.0
        assert "position inconsistency" in (out / "report.md").read_text()
    flag = ["--pairwise"] if mode == "pairwise" else []
    audited = CliRunner().invoke(app, ["judge-audit", *flag, "--judge", f"model:{out / 'final'}", "--cases",
                                       str(out / "cases.jsonl"), "--limit", "8"])  # fmt: skip
    assert audited.exit_code == 0, audited.output
    with pytest.raises(ConfigError, match="holds a run already"):
        run_recipe(load_recipe(recipe))


def test_verdict_recipes_are_validated_before_anything_loads(tmp_path):
    from agentenv.recipes.config import load_recipe

    base = {"name": "j", "verdict": {"world": 10}, "output": {"dir": str(tmp_path / "r")}}
    assert load_recipe("recipes/judge-pyes.yaml").verdict.max_minutes == 30
    for override, message in [
        (["verdict.mode=listwise"], "verdict.mode="),
        (["verdict.lr=0"], "verdict.lr="),
        (["verdict.world=0", "verdict.household=0"], "give cases"),
        (["verdict.cases=/no/such.jsonl"], "no such file"),
        (["verdict.autocast=fp8"], "autocast="),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_recipe(base, override)
    with pytest.raises(ConfigError, match="leave out 'sft' and 'rl'"):
        load_recipe({**base, "sft": {"episodes": 4}})
