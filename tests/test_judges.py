import asyncio
import math
import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub

import pytest

from agentenv import ConfigError
from agentenv.models import tiny_model
from agentenv.rewards.antihack import load_judge_pairs
from agentenv.rewards.base import Sample, WeightedSum
from agentenv.rewards.judges import (
    GroupJudge,
    LocalLM,
    OpenAIServer,
    PairwiseJudge,
    PointwiseJudge,
    ProcessJudge,
    PromptTemplate,
    available_templates,
    fit,
    shared_local_lm,
    verdict_from_top_logprobs,
)
from tests.canned_server import CannedHandler, CannedServer, serving

FRANCE = "What is the capital of France?"
CONVERSATION = (
    {"role": "user", "content": "What is 17 + 25? Think step by step."},
    {"role": "assistant", "content": "17 + 25 = 17 + 20 + 5."},
    {"role": "assistant", "content": "17 + 20 = 37, and 37 + 5 = 42."},
)

# Easy questions with a correct and a clearly wrong answer.
EASY = load_judge_pairs()[:8]


# ---- templates ------------------------------------------------------------------------------------------------


def test_every_bundled_template_loads_and_fits_its_judge():
    assert available_templates() == ["critique", "group", "nuggets", "pairwise", "pointwise", "principles", "process"]
    for name in available_templates():
        assert PromptTemplate.load(name).user


def test_optional_blocks_are_left_out_when_their_field_is_empty():
    template = PromptTemplate.load("pointwise")
    bare = template.render(prompt="Q?", response="A", reference="", principles="")
    full = template.render(prompt="Q?", response="A", reference="Paris", principles="- be strict")
    assert "Reference answer" not in bare[-1]["content"] and "Reference answer: Paris" in full[-1]["content"]
    assert bare[0]["role"] == "system"


def test_a_user_template_file_is_loaded_and_checked(tmp_path, tiny):
    good = tmp_path / "mine.yaml"
    good.write_text("user: 'Q: {prompt}\\nA: {response}\\nGood? Yes or No.'\n")
    judge = PointwiseJudge(tiny, template=good)
    assert judge.template.name == "mine" and not judge.template.system
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: 'A: {response} {answer}'\n")
    with pytest.raises(ConfigError, match=r"missing fields \['prompt'\]; unknown fields \['answer'\]"):
        PointwiseJudge(tiny, template=bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("user: '{prompt} {response}'\nsytem: hi\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        PromptTemplate.load(typo)


def test_an_unknown_template_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'pointwise'"):
        PromptTemplate.load("pointwize")


def test_bad_configuration_fails_fast(tiny):
    with pytest.raises(ConfigError, match="aggregate"):
        ProcessJudge(tiny, aggregate="median")
    with pytest.raises(ConfigError, match="normalize"):
        GroupJudge(tiny, normalize="softmax")
    with pytest.raises(ConfigError, match="threshold"):
        PointwiseJudge(tiny, threshold=2)
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIServer("localhost:8000", "m")


# ---- plumbing on the tiny random model (fast) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return LocalLM(tiny_model(), batch_size=4)


def test_batched_p_yes_equals_one_by_one(tiny):
    """Left padding with matching position ids: a prompt's verdict does not depend on its batch."""
    judge = PointwiseJudge(tiny)
    samples = [Sample(r, prompt=q) for q, _, r, _ in EASY[:5]] + [Sample("word " * 60, prompt="long")]
    batched = [s.value for s in judge.batch(samples)]
    single = [judge(s).value for s in samples]
    assert batched == pytest.approx(single, abs=1e-5)


def test_pairwise_preference_is_antisymmetric_by_construction(tiny):
    judge = PairwiseJudge(tiny)
    answers = ["Paris", "London", "It is Paris.", "paris"]
    forward = judge.compare_batch([(a, b) for a in answers for b in answers])
    backward = judge.compare_batch([(b, a) for a in answers for b in answers])
    assert all(f.value + b.value == 1.0 for f, b in zip(forward, backward, strict=True))
    assert [f.value for f in forward[:: len(answers) + 1]] == [0.5] * len(answers)


def test_importing_the_judges_loads_no_torch():
    code = "import sys, agentenv.rewards.judges, agentenv.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bad_input_scores_zero_with_a_reason(tiny):
    judges = [PointwiseJudge(tiny), PairwiseJudge(tiny), GroupJudge(tiny), ProcessJudge(tiny)]
    for judge in judges:
        scores = judge.batch([None, b"\xff\xfe", 12, "x" * 300_000, "", {"answer": 1}])
        assert [s.value for s in scores] == [0.0] * 6
        assert all(s.reason for s in scores)


def test_a_prompt_longer_than_the_context_is_shortened_and_noted(tiny):
    judge = PointwiseJudge(tiny, max_prompt_tokens=256)
    score = judge(Sample("the answer is " * 5000 + "42", prompt="What is 6 x 7?"))
    assert 0.0 <= score.value <= 1.0
    assert "response" in score.details["truncated"]
    assert tiny.count_tokens(judge.template.render(prompt="x", response="y")) < 256


def test_threshold_gives_zero_or_one_and_keeps_p_yes(tiny):
    scores = PointwiseJudge(tiny, threshold=0.5).batch(["Paris", "London"], prompt=FRANCE)
    assert all(s.value in (0.0, 1.0) and s.value == float(s.parts["p_yes"] >= 0.5) for s in scores)


def test_critiques_are_sampled_reproducibly_and_voted(tiny):
    judge = PointwiseJudge(tiny, critiques=3, max_new_tokens=6, aggregate="vote")
    first, second = judge(Sample("Paris", prompt=FRANCE)), judge(Sample("Paris", prompt=FRANCE))
    assert set(first.parts) == {"p_yes", "vote", "critique.0", "critique.1", "critique.2"}
    assert first.value == first.parts["vote"] == sum(first.parts[f"critique.{k}"] >= 0.5 for k in range(3)) / 3
    assert first.details["critiques"] == second.details["critiques"] and len(first.details["critiques"]) == 3


def test_group_scores_one_per_member_grouped_by_prompt(tiny):
    samples = [Sample(r, prompt="Q1") for r in ("a", "bb", "ccc")] + [Sample("z", prompt="Q2")]
    samples.append(Sample("y", prompt="Q3", metadata={"group_id": 1}))
    samples.append(Sample("w", prompt="Q4", metadata={"group_id": 1}))
    judge = GroupJudge(tiny)
    scores = judge.batch(samples)
    assert len(scores) == 6 and all(0.0 <= s.value <= 1.0 for s in scores)
    assert [s.details["group_size"] for s in scores] == [3, 3, 3, 1, 2, 2]
    ranked = GroupJudge(tiny, normalize="rank").batch(samples[:3])
    assert sorted(s.value for s in ranked) == [0.0, 0.5, 1.0]


def test_process_judge_scores_every_assistant_step(tiny):
    sample = Sample("So the answer is 42.", prompt="17 + 25?", messages=CONVERSATION)
    mean, low = ProcessJudge(tiny)(sample), ProcessJudge(tiny, aggregate="min")(sample)
    assert set(mean.parts) == {"step.0", "step.1", "step.2"}  # two steps in the messages + the response
    assert low.value == min(mean.parts.values()) <= mean.value
    assert ProcessJudge(tiny)(Sample("", messages=CONVERSATION[:1])).reason == "no assistant steps to judge"


def test_a_long_history_keeps_its_most_recent_turns(tiny):
    early = {"role": "user", "content": "old context " * 2000}
    sample = Sample("42", prompt="17 + 25?", messages=(early, *CONVERSATION))
    score = ProcessJudge(tiny, max_prompt_tokens=400)(sample)
    assert set(score.parts) == {"step.0", "step.1", "step.2"}
    assert "history" in score.details["truncated"]["step.2"]


def test_fit_cuts_the_longest_field_in_the_middle_or_from_the_front():
    def render(f):
        return [{"role": "user", "content": f"{f['prompt']}|{f['history']}|{f['step']}"}]

    def count(chat):  # one token per character keeps the arithmetic visible
        return len(chat[0]["content"])

    history, step = "".join(f"turn {k}. " for k in range(200)), "s" * 500
    fields = {"prompt": "Add.", "history": history, "step": step}
    fitted = fit(render, fields, count, limit=700, keep_tail=("history",))
    text = fitted.chat[0]["content"]
    assert count(fitted.chat) <= 700 and set(fitted.truncated) == {"history", "step"}
    assert text.startswith("Add.|[... ") and "turn 199. |" in text  # the history keeps its end
    assert text.endswith("s" * 10) and "characters cut ...] s" in text  # the step keeps head and tail


def test_only_empty_responses_never_load_a_model():
    lazy = LocalLM("no-such-folder-or-model")  # loading it would fail
    assert PointwiseJudge(lazy).batch(["", "  "])[1].reason == "empty response"


def test_judges_compose_with_containers(tiny):
    rubric = WeightedSum(correct=(PointwiseJudge(tiny), 2.0), process=ProcessJudge(tiny))
    score = rubric(Sample("42", prompt="17 + 25?", messages=CONVERSATION))
    assert {"correct", "correct.p_yes", "process", "process.step.0"} <= set(score.parts)


# ---- the default small model (SmolLM2-135M-Instruct) ------------------------------------------------------------


@pytest.fixture(scope="module")
def smol():
    lm = shared_local_lm("default")  # converted into the test session's cache on first use (~20 s)
    lm.load()
    return lm


@pytest.mark.slow
def test_p_yes_is_read_from_the_yes_and_no_tokens(smol):
    yes, no = smol.p_yes(
        [[{"role": "user", "content": f"Reply with the single word {word}."}] for word in ("Yes", "No")]
    )
    assert yes.p_yes > 0.5 > no.p_yes
    assert 0.0 < yes.mass <= 1.0


@pytest.mark.slow
def test_default_judge_gives_probabilities_batched_as_one_by_one(smol):
    judge = PointwiseJudge()
    samples = [Sample(r, prompt=q, reference=ref) for q, ref, r, _ in EASY[:3]]
    batched = judge.batch(samples)
    assert all(0.0 <= s.value <= 1.0 and s.value == s.parts["p_yes"] for s in batched)
    assert [s.value for s in batched] == pytest.approx([judge(s).value for s in samples], abs=1e-4)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="SmolLM2-135M judges at chance: mean p_yes 0.097 for the correct answers vs 0.100 for the wrong ones on "
    "these 8 pairs (16 pairs in benchmarks/results/judge_throughput.json: 11 won, margin 0.003). Kept as the "
    "specification a judge model must meet.",
)
def test_default_judge_rates_correct_answers_higher_on_aggregate(smol):
    judge = PointwiseJudge()
    samples = [Sample(a, prompt=q, reference=ref) for q, ref, good, bad in EASY for a in (good, bad)]
    values = [s.value for s in judge.batch(samples)]
    good, bad = values[0::2], values[1::2]
    assert sum(good) / len(good) > sum(bad) / len(bad)


@pytest.mark.slow
def test_pairwise_swap_makes_the_preference_antisymmetric(smol):
    judge = PairwiseJudge()
    a, b = Sample("Paris", prompt=FRANCE), Sample("London", prompt=FRANCE)
    a_over_b = judge.compare(a, b)
    assert a_over_b + judge.compare(b, a) == 1.0
    assert judge.compare(a, Sample("Paris", prompt=FRANCE)) == 0.5
    scored = judge(Sample("Paris", prompt=FRANCE, metadata={"baseline": "London"}))
    assert scored.value == a_over_b and set(scored.parts) == {"preference", "p_yes.ab", "p_yes.ba"}
    assert scored.parts["p_yes.ab"] != scored.parts["p_yes.ba"]  # both orders were asked
    assert "baseline" in judge(Sample("Paris", prompt=FRANCE)).reason


@pytest.mark.slow
def test_default_group_and_process_judges(smol):
    group = GroupJudge().batch([Sample(r, prompt=FRANCE) for r in ("Paris", "London", "I don't know.")])
    assert len(group) == 3 and all(0.0 <= s.value <= 1.0 and s.details["group_size"] == 3 for s in group)
    process = ProcessJudge(aggregate="min")(Sample("42", prompt="17 + 25?", messages=CONVERSATION))
    assert set(process.parts) == {"step.0", "step.1", "step.2"} and 0.0 <= process.value <= 1.0


@pytest.mark.slow
def test_default_judge_with_critiques(smol):
    score = PointwiseJudge(critiques=2, max_new_tokens=16)(Sample("Paris", prompt=FRANCE, reference="Paris"))
    assert len(score.details["critiques"]) == 2 and all(score.details["critiques"])
    assert 0.0 <= score.value <= 1.0 and score.value == score.parts["p_yes"]


# ---- an OpenAI-compatible server (a real HTTP server on loopback, with canned answers) ---------------------------


class CannedOpenAI(CannedServer):
    """Answers /v1/chat/completions: top logprobs favouring "Yes" when the response is Paris, else "No";
    ``failures`` holds status codes to answer the next requests with; counts requests and peak concurrency."""

    def __init__(self, delay: float = 0.0):
        super().__init__(JudgeHandler, delay)


class JudgeHandler(CannedHandler):
    def answer(self, body):
        prompt = " ".join(m["content"] for m in body["messages"])
        if body.get("max_tokens") != 1:  # a critique
            choices = [{"message": {"role": "assistant", "content": f"critique {k}"}} for k in range(body["n"])]
            return self.reply(200, {"choices": choices})
        if "silence" in prompt:
            top = {"Hmm": 0.9, "Well": 0.1}
        else:
            top = (
                {"Yes": 0.6, " yes": 0.1, "No": 0.2, "Maybe": 0.1}
                if "Response: Paris" in prompt
                else {"Yes": 0.1, "No": 0.9}
            )
        content = [{"token": "?", "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in top.items()]}]
        self.reply(200, {"choices": [{"message": {"content": "?"}, "logprobs": {"content": content}}]})


@pytest.fixture
def server():
    with serving(CannedOpenAI()) as srv:
        yield srv


def http_judge(server, **kw) -> PointwiseJudge:
    return PointwiseJudge(OpenAIServer(server.url, "judge", retries=2, backoff=0.01, **kw))


def test_p_yes_from_top_logprobs():
    assert verdict_from_top_logprobs({"Yes": math.log(0.6), " yes": math.log(0.1), "No": math.log(0.2)}).p_yes == (
        pytest.approx(0.7 / 0.9)
    )
    assert verdict_from_top_logprobs({"Maybe": 0.0}).error


def test_http_judge_reads_p_yes_from_the_server(server):
    scores = http_judge(server).batch(["Paris", "London"], prompt=FRANCE, reference="Paris")
    assert scores[0].value == pytest.approx(0.7 / 0.9) and scores[1].value == pytest.approx(0.1)
    request = server.requests[0]
    assert request["logprobs"] is True and request["max_tokens"] == 1 and request["top_logprobs"] == 20
    assert request["model"] == "judge" and "Reference answer: Paris" in request["messages"][-1]["content"]


def test_http_judge_retries_after_a_server_error(server):
    server.failures = [500]
    score = http_judge(server)(Sample("Paris", prompt=FRANCE))
    assert score.value == pytest.approx(0.7 / 0.9)
    assert len(server.requests) == 2


def test_http_judge_gives_up_with_a_reason(server):
    server.failures = [503, 503, 503]
    score = http_judge(server)(Sample("Paris", prompt=FRANCE))
    assert score.value == 0.0 and "HTTP 503" in score.reason and "3 attempts" in score.reason
    server.failures = [400]
    score = http_judge(server)(Sample("Paris", prompt=FRANCE))
    assert "HTTP 400" in score.reason and len(server.requests) == 4  # a client error is not retried


def test_http_judge_without_a_yes_or_no_token_scores_zero(server):
    assert "no Yes/No token" in http_judge(server)(Sample("silence", prompt="?")).reason


def test_an_unreachable_server_scores_zero_with_a_reason():
    judge = PointwiseJudge(OpenAIServer("http://127.0.0.1:9/v1", "judge", retries=1, backoff=0.01, timeout=2))
    score = judge(Sample("Paris", prompt=FRANCE))
    assert score.value == 0.0 and "ConnectError" in score.reason


def test_http_critiques_are_generated_then_judged(server):
    judge = PointwiseJudge(OpenAIServer(server.url, "judge"), critiques=2)
    score = judge(Sample("Paris", prompt=FRANCE))
    assert score.details["critiques"] == ["critique 0", "critique 1"]
    assert score.value == pytest.approx(0.7 / 0.9)
    assert server.requests[0]["n"] == 2 and server.requests[-1]["messages"][-2]["content"].startswith("critique")


def test_concurrent_abatch_calls_share_the_concurrency_limit(server):
    server.delay = 0.05
    judge = http_judge(server, concurrency=2)

    async def main():
        batches = [[Sample(r, prompt=FRANCE) for r in ("Paris", "London", "Paris", "Lyon")] for _ in range(3)]
        return await asyncio.gather(*(judge.abatch(b) for b in batches))

    results = asyncio.run(main())
    assert [[round(s.value, 3) for s in r] for r in results] == [[0.778, 0.1, 0.778, 0.1]] * 3
    assert len(server.requests) == 12 and server.peak == 2


def test_sync_batch_inside_a_running_event_loop(server):
    async def main():
        return http_judge(server).batch(["Paris"], prompt=FRANCE)

    assert asyncio.run(main())[0].value == pytest.approx(0.7 / 0.9)


# ---- the rule-based pairwise judge (no model) -------------------------------------------------------------------
DOCUMENTS = "[Kamrond]\nKamrond has an area of 1,280 km2. The region is one of the regions of Haedrok."


def side(answer, argument, reference="1280"):
    from agentenv.rewards.base import Sample

    metadata = {"answer": answer, "documents": DOCUMENTS}
    return Sample(f"Answer: {answer}\n{argument}", prompt="What is the area of Kamrond?", reference=reference,
                  metadata=metadata)  # fmt: skip


@pytest.mark.parametrize(
    "answer, argument, value",
    [
        ("1280", 'It is 1280: "Kamrond has an area of 1,280 km2."', 1.0),  # verified
        ("Haedrok", 'It is Haedrok: "The region is one of the regions of Haedrok."', 0.5),  # supported, not correct
        ("1280", 'It is 1280: "The region is one of the regions of Haedrok."', 0.25),  # a true quote, not for it
        ("1280", "It is 1280, trust me.", 0.0),
        ("1280", 'It is 1280: "Kamrond measures exactly 1280 km2 in area."', 0.0),  # made up: -0.25, floored
        ("1280", 'It is 1280: "Kamrond has an area of 1,280 km2." and "1280"', 1.0),  # short quotes are not quotes
    ],
)
def test_evidence_judge_credits_verified_supported_and_true_quotes(answer, argument, value):
    from agentenv.rewards.judges import EvidenceJudge

    assert EvidenceJudge().credibility(side(answer, argument)).value == pytest.approx(value)


def test_evidence_judge_is_a_pairwise_judge_without_a_model():
    from agentenv.rewards.judges import EvidenceJudge

    judge = EvidenceJudge()
    honest = side("1280", 'It is 1280: "Kamrond has an area of 1,280 km2."')
    liar = side("Haedrok", 'It is Haedrok: "The region is one of the regions of Haedrok."')
    assert judge.compare(honest, liar) == 0.75 and judge.compare(liar, honest) == 0.25
    assert judge.compare(honest, honest) == 0.5
    as_reward = judge(honest, metadata={**honest.metadata, "baseline": liar})
    assert as_reward.value == 0.75 and as_reward.parts["a.verified"] == 1.0
    assert judge(None).value == 0.0 and judge("no baseline").reason
