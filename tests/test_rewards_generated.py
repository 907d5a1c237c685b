"""Model-written rubric parts: nuggets extracted by an LLM (Search-Gen-V) and judge-generated principles
(DeepSeek-GRM), against a real OpenAI-compatible HTTP server with canned answers and the real small local model."""

from __future__ import annotations

import math

import pytest

from agentenv.rewards import NuggetRubric, OpenAIServer, PointwiseJudge, Sample
from agentenv.rewards.judges import shared_local_lm
from agentenv.rewards.nuggets import LLMNuggetExtractor, bullet_lines, extract_nuggets
from tests.canned_server import CannedHandler, CannedServer, serving

FRANCE = "What is the capital of France, and how many people live there?"
REFERENCE = "The capital of France is Paris, home to about 2.1 million people."


class WriterHandler(CannedHandler):
    """Nugget lists for extraction prompts, principles for principle prompts, P(yes) for verdicts."""

    def answer(self, body):
        prompt = " ".join(m["content"] for m in body["messages"])
        if body.get("max_tokens") == 1:
            p = 0.8 if "Grade by these principles" in prompt and "Response: Paris" in prompt else 0.3
            top = [{"token": "Yes", "logprob": math.log(p)}, {"token": "No", "logprob": math.log(1 - p)}]
            content = [{"token": "?", "top_logprobs": top}]
            return self.reply(200, {"choices": [{"message": {"content": "?"}, "logprobs": {"content": content}}]})
        if "List every fact" in prompt:
            text = (
                "OK"
                if "silent" in prompt
                else "- Paris is the capital of France.\n2. About 2.1 million people live there."
            )
        else:
            text = "Principles:\n- The answer must name the capital city.\n- Numbers must match the reference."
        self.reply(200, {"choices": [{"message": {"role": "assistant", "content": text}}] * body.get("n", 1)})


@pytest.fixture
def server():
    with serving(CannedServer(WriterHandler)) as srv:
        yield srv


def backend(server):
    return OpenAIServer(server.url, "writer", retries=1, backoff=0.01)


def test_bullet_lines_reads_model_lists():
    text = "Facts:\n- Paris is the capital.\n* paris is the capital\n3) It has 2.1 million people.\n-\nok\n b. Rivers."
    assert bullet_lines(text) == ["Paris is the capital.", "It has 2.1 million people."]
    assert bullet_lines(text, limit=1) == ["Paris is the capital."]
    assert bullet_lines("") == []


def test_llm_extractor_gives_the_models_facts_once_per_reference(server):
    extractor = LLMNuggetExtractor(backend(server))
    assert extractor(REFERENCE, FRANCE) == ["Paris is the capital of France.", "About 2.1 million people live there."]
    assert extractor(REFERENCE, FRANCE) == extractor(REFERENCE, FRANCE)
    assert len(server.requests) == 1  # memoised
    assert "Question: " + FRANCE in server.requests[0]["messages"][-1]["content"]


def test_llm_extractor_falls_back_to_rule_nuggets_when_the_model_gives_none(server):
    extractor = LLMNuggetExtractor(backend(server))
    silent = "The silent river is long. It flows north."
    assert extractor(silent) == extract_nuggets(silent)
    assert extractor.fallbacks == 1


def test_nugget_rubric_extracts_each_distinct_reference_once_in_a_batch(server):
    rubric = NuggetRubric(extractor=LLMNuggetExtractor(backend(server)))
    other = "Berlin is the capital of Germany."
    scores = rubric.batch(
        [
            Sample("Paris is the capital of France; about 2.1 million people live there.", reference=REFERENCE),
            Sample("Paris is the capital of France.", reference=REFERENCE),
            Sample("Berlin.", reference=other),
        ]
    )
    assert len(server.requests) == 2  # two distinct references, one extraction each
    assert scores[0].value == 1.0 and scores[0].parts["nugget.1"] == 1.0
    assert 0 < scores[1].value < 1


def test_judge_writes_principles_once_per_question_and_grades_by_them(server):
    judge = PointwiseJudge(backend(server), generate_principles=2)
    scores = judge.batch(["Paris", "Lyon", "Paris"], prompt=FRANCE, reference="Paris")
    principle_requests = [r for r in server.requests if r.get("max_tokens") != 1]
    assert len(principle_requests) == 1
    assert judge.principles_for([Sample("x", prompt=FRANCE, reference="Paris")]) == [
        ("The answer must name the capital city.", "Numbers must match the reference.")
    ]
    verdict = next(r for r in server.requests if r.get("max_tokens") == 1)["messages"][-1]["content"]
    assert "Grade by these principles:\n- The answer must name the capital city." in verdict
    assert scores[0].value == pytest.approx(0.8) and scores[1].value == pytest.approx(0.3)


def test_given_principles_come_before_generated_ones(server):
    judge = PointwiseJudge(backend(server), principles=["Be strict."], generate_principles=1)
    assert judge.principles_for([Sample("x", prompt=FRANCE)]) == [
        ("Be strict.", "The answer must name the capital city.")
    ]


def test_real_small_model_extracts_nuggets_and_writes_principles():
    lm = shared_local_lm()
    extractor = LLMNuggetExtractor(lm, max_nuggets=4, max_new_tokens=64)
    nuggets = extractor(REFERENCE, FRANCE)
    assert 1 <= len(nuggets) <= 4 and all(isinstance(n, str) and len(n.split()) >= 2 for n in nuggets)
    judge = PointwiseJudge(lm, generate_principles=2)
    [score] = judge.batch([Sample("Paris, about 2.1 million people.", prompt=FRANCE, reference=REFERENCE)])
    assert 0.0 <= score.value <= 1.0 and "p_yes" in score.parts
    [principles] = judge.principles_for([Sample("x", prompt=FRANCE, reference=REFERENCE)])
    assert len(principles) <= 2 and all(isinstance(p, str) for p in principles)
