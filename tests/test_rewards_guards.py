"""Anti-hacking guards: master-key and degenerate answers fail, real answers in varied formats pass, and a
guard in a Gate or Sequential keeps such responses away from the reward behind it."""

import pytest

from agentenv.errors import ConfigError
from agentenv.rewards.base import Gate, RewardFn, Sample, Sequential
from agentenv.rewards.extract import Extract
from agentenv.rewards.guards import (
    AnswerPresent,
    DegenerateAnswer,
    HedgedAnswer,
    NonEmptyAnswer,
    PaddedAnswer,
    ReferenceEcho,
    alternatives,
    length_factor,
)
from agentenv.rewards.rules import ExactMatch, NumericMatch, TokenF1

# Master-RM's master keys and kin: a judge must never see these as answers.
MASTER_KEYS = [
    "",
    " ",
    ":",
    ".",
    ",",
    "...",
    "Thought process:",
    "Let's solve this problem step by step.",
    "Let’s think step by step",
    "Solution",
    "Solution:",
    "**Final Answer**",
    "The answer is",
    "Answer:",
    "Step 1:",
    "Okay, so",
    "Let me think.",
    "解",
    "解答：",
    "かいせつ",
    "Respuesta",
    "Lösung:",
    "To solve this problem, we need to",
    "First, let me analyze the question.",
    "Ответ:",
]

# Real answers in varied formats: a guard must let them through.
REAL_ANSWERS = [
    "42",
    "B",
    "A",
    "-3/4",
    "∞",
    "Paris",
    "The answer is 42.",
    "Solution: x = 5",
    "Let's solve this problem step by step. 2 + 2 = 4, so the answer is 4.",
    r"\boxed{\frac{1}{2}}",
    "<answer>Tokyo</answer>",
    "东京是日本的首都",
    "La respuesta es 7",
    "yes",
    "No.",
    "Both",
    "The same",
    "None of them",
]


@pytest.mark.parametrize("response", MASTER_KEYS)
def test_degenerate_answer_fails_master_keys(response):
    score = DegenerateAnswer()(Sample(response))
    assert score.value == 0.0 and score.reason


@pytest.mark.parametrize("response", REAL_ANSWERS)
def test_degenerate_answer_passes_real_answers(response):
    score = DegenerateAnswer()(Sample(response))
    assert score.value == 1.0, score.reason


def test_degenerate_answer_reasons_say_what_was_wrong():
    guard = DegenerateAnswer()
    assert guard(Sample("  \n")).reason == "empty response"
    assert guard(Sample("?!…")).reason == "only punctuation or symbols"
    assert guard(Sample("Solution:")).reason.startswith("nothing beyond reasoning openers")


def test_a_single_repeated_token_is_degenerate():
    assert DegenerateAnswer()(Sample("yes yes yes yes")).reason == "one token repeated: 'yes' x4"
    assert DegenerateAnswer()(Sample("Paris Paris")).value == 1.0  # below max_repeats
    assert DegenerateAnswer(max_repeats=2)(Sample("Paris Paris")).value == 0.0


def test_min_content_tokens_asks_for_more_than_one_word():
    guard = DegenerateAnswer(min_content_tokens=3)
    assert guard(Sample("Paris")).value == 0.0
    assert guard(Sample("Paris is the capital of France")).value == 1.0


def test_custom_openers_replace_the_defaults():
    guard = DegenerateAnswer(openers=[r"as an ai"])
    assert guard(Sample("As an AI,")).value == 0.0
    assert guard(Sample("Respuesta")).value == 1.0


def test_process_words_alone_are_no_answer():
    assert DegenerateAnswer()(Sample("To solve this problem, we need to")).value == 0.0
    assert DegenerateAnswer()(Sample("First, let me analyze the question.")).value == 0.0
    assert DegenerateAnswer(filler=())(Sample("To solve this problem, we need to")).value == 1.0


def test_a_process_word_that_the_reference_uses_counts():
    assert DegenerateAnswer()(Sample("Hence", reference="hence")).value == 1.0
    assert DegenerateAnswer()(Sample("Hence")).value == 0.0


def test_the_reference_answer_itself_is_never_degenerate():
    assert DegenerateAnswer()(Sample("Solution.", reference="solution")).value == 1.0


def test_degenerate_answer_config_errors():
    with pytest.raises(ConfigError, match="min_content_tokens=0"):
        DegenerateAnswer(min_content_tokens=0)
    with pytest.raises(ConfigError, match="openers"):
        DegenerateAnswer(openers=["(unclosed"])


def test_non_empty_answer_only_checks_for_content():
    assert NonEmptyAnswer()(Sample("")).reason == "empty response"
    assert NonEmptyAnswer()(Sample(" :. ")).reason == "only punctuation or symbols"
    assert NonEmptyAnswer()(Sample("Solution")).value == 1.0  # that is DegenerateAnswer's job
    assert NonEmptyAnswer()(Sample("\u200b")).value == 0.0  # a zero-width space is no content


def test_guards_score_bad_input_zero_instead_of_raising():
    guards = (NonEmptyAnswer(), DegenerateAnswer(), ReferenceEcho(), AnswerPresent(), HedgedAnswer(), PaddedAnswer())
    for guard in guards:
        assert guard(None).value == 0.0 and guard(b"\xff").value == 0.0


# ---- reference echo ------------------------------------------------------------------------------------------

QUESTION = "Which river flows through the city of Vienna, the capital of Austria?"


def test_restating_the_question_is_an_echo():
    score = ReferenceEcho()(Sample("The river that flows through Vienna, capital city of Austria.", QUESTION))
    assert score.value == 0.0 and score.parts["echo"] == 1.0 and "restate the prompt" in score.reason


def test_an_answer_that_uses_some_question_words_is_not_an_echo():
    score = ReferenceEcho()(Sample("The Danube flows through Vienna and on to Budapest and the Black Sea.", QUESTION))
    assert score.value == 1.0 and score.parts["echo"] < 0.5


def test_short_answers_pass_even_when_taken_from_the_prompt():
    assert ReferenceEcho()(Sample("Vienna", "Which is bigger, Vienna or Graz?")).value == 1.0


def test_a_response_that_contains_the_reference_answer_is_no_echo():
    prompt = "Sort these words: pear apple fig banana"
    score = ReferenceEcho()(Sample("apple banana fig pear", prompt, reference="apple banana fig pear"))
    assert score.value == 1.0 and score.reason == "the response contains the reference answer"
    assert ReferenceEcho()(Sample("apple banana fig pear", prompt)).value == 0.0
    sentence = Sample("The day after Monday is Tuesday.", "What day comes after Monday?", reference="Tuesday")
    assert ReferenceEcho()(sentence).value == 1.0


def test_restating_a_short_question_without_its_answer_is_an_echo():
    assert ReferenceEcho()(Sample("7 times 8", "What is 7 times 8?", reference="56")).value == 0.0


def test_the_prompt_comes_from_the_user_turns_when_not_given():
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION})
    score = ReferenceEcho()(
        Sample("Vienna, the capital of Austria: which river flows through the city?", messages=messages)
    )
    assert score.value == 0.0


def test_without_a_prompt_nothing_can_be_echoed():
    score = ReferenceEcho()(Sample("The Danube river flows through Vienna."))
    assert score.value == 1.0 and score.reason == "no prompt to compare with"


def test_reference_echo_config_errors():
    with pytest.raises(ConfigError, match="threshold=2"):
        ReferenceEcho(threshold=2)


# ---- hedged and padded short answers --------------------------------------------------------------------------


def test_alternatives_are_cut_at_commas_or_and_slashes_not_inside_numbers():
    assert alternatives("Kael Drovik or Mara Lind") == ["Kael Drovik", "Mara Lind"]
    assert alternatives("A, B and C") == ["A", "B", "C"]
    assert alternatives("12,340") == ["12,340"] and alternatives("3/4") == ["3/4"]
    assert alternatives("Paris\nLyon / Nice; Lille") == ["Paris", "Lyon", "Nice", "Lille"]


@pytest.mark.parametrize("hedge", ["Paris or Lyon", "Paris, Lyon, Nice, Lille", "Paris\nLyon", "Paris/Lyon"])
def test_a_hedged_single_answer_fails(hedge):
    score = HedgedAnswer()(Sample(hedge, reference="Paris"))
    assert score.value == 0.0 and score.reason.startswith("hedged:")


def test_a_single_answer_and_every_accepted_reference_pass_the_hedge_guard():
    guard = HedgedAnswer()
    assert guard(Sample("Paris", reference="paris")).value == 1.0
    assert guard(Sample("the capital Paris", reference="Paris")).value == 1.0  # one alternative, if wordy
    date = Sample("March 3, 1950", reference="3 March 1950", metadata={"references": ["March 3, 1950"]})
    assert guard(date).value == 1.0


def test_a_list_may_name_half_as_many_items_again_as_the_reference():
    items = {"items": ["Ann", "Bo", "Cy", "Di"]}
    guard = HedgedAnswer()
    assert guard(Sample("Ann, Bo, Cy, Di, Ed and Flo", reference="Ann, Bo, Cy, Di", metadata=items)).value == 1.0
    assert guard(Sample("Ann, Bo, Cy, Di, Ed, Flo, Gus", reference="Ann, Bo, Cy, Di", metadata=items)).value == 0.0
    assert HedgedAnswer(slack=0)(Sample("Ann, Bo, Cy, Di, Ed", metadata=items)).value == 0.0


def test_hedged_guard_keeps_token_f1_from_paying_for_candidates():
    reward = Sequential({"no_hedge": HedgedAnswer(), "verifier": TokenF1()})
    assert reward(Sample("Kael Drovik", reference="Kael Drovik")).value == 1.0
    candidates = ", ".join(["Kael Drovik", "Mara Lind", "Oren Vask", "Ila Dune", "Tam Rhee"])
    assert TokenF1()(Sample(candidates, reference="Kael Drovik")).value > 0.3  # what the guard is for
    assert reward(Sample(candidates, reference="Kael Drovik")).value == 0.0


def test_length_factor_is_one_up_to_the_allowance_then_falls_with_the_square():
    assert length_factor("x" * 40, "Paris", 4.0) == 1.0  # min_chars=64 for short references
    assert length_factor("x" * 400, "y" * 100, 4.0) == 1.0
    assert length_factor("x" * 800, "y" * 100, 4.0) == pytest.approx(0.25)
    assert length_factor("  " + "x" * 400 + "\n", "y" * 100, 4.0) == 1.0  # surrounding whitespace is no length


def test_padding_that_normalisation_would_strip_is_gated():
    reward = Gate(PaddedAnswer(), ExactMatch())
    assert ExactMatch()(Sample("Paris" + "." * 4000, reference="Paris")).value == 1.0  # what the guard is for
    score = reward(Sample("Paris" + "." * 4000, reference="Paris"))
    assert score.value == 0.0 and "padded: 4005 characters" in score.reason
    assert reward(Sample("Paris.", reference="Paris")).value == 1.0
    assert PaddedAnswer()(Sample("x" * 5000)).value == 1.0  # no reference to compare with


def test_hedge_and_padding_guard_config_errors():
    with pytest.raises(ConfigError, match="slack=-1"):
        HedgedAnswer(slack=-1)
    with pytest.raises(ConfigError, match=r"max_ratio=0\.5"):
        PaddedAnswer(max_ratio=0.5)


# ---- answer present -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response", [r"so \boxed{7}", "<answer>7</answer>", "Final answer: 7", "**Answer:** seven", "the answer is 7"]
)
def test_answer_present_finds_marked_answers(response):
    assert AnswerPresent()(Sample(response)).value == 1.0


@pytest.mark.parametrize("response", ["7", "Answer:", r"\boxed{}", "<answer> </answer>", "Let's think step by step."])
def test_answer_present_fails_without_a_marked_answer(response):
    score = AnswerPresent()(Sample(response))
    assert score.value == 0.0 and score.reason.startswith("no answer found")


def test_answer_present_with_auto_accepts_the_last_line():
    assert AnswerPresent("auto")(Sample("7")).value == 1.0
    assert AnswerPresent("tags", tag="final")(Sample("<final>7</final>")).details["answer"] == "7"


def test_answer_present_config_errors():
    with pytest.raises(ConfigError, match="how='box'"):
        AnswerPresent("box")


# ---- in front of a judge ----------------------------------------------------------------------------------------


def always_yes():
    """A judge that is fooled by anything, and counts how often it was asked."""
    calls = []

    def judge(sample):
        calls.append(sample.response)
        return 1.0

    return RewardFn(judge, name="gullible_judge"), calls


@pytest.mark.parametrize("response", MASTER_KEYS)
def test_a_gate_keeps_master_keys_from_the_judge(response):
    judge, calls = always_yes()
    score = Gate(DegenerateAnswer(), judge)(Sample(response, "What is 6 x 7?", reference="42"))
    assert score.value == 0.0 and score.reason.startswith("gated") and calls == []


def test_a_gated_exact_match_still_pays_real_answers():
    reward = Gate(DegenerateAnswer(), ExactMatch())
    assert reward(Sample("Paris", reference="paris")).value == 1.0
    assert reward(Sample(":", reference="''")).value == 0.0  # punctuation that is not the reference


def test_a_punctuation_reference_is_still_an_answer():
    """PyDocs defaults such as ``''``, ``'*'`` or ``{}`` normalise to nothing; the reference must pass anyway, and
    another punctuation-only answer must not."""
    reward = Gate(DegenerateAnswer(), ExactMatch())
    for reference in ("''", "'*'", "{}", ":"):
        assert reward(Sample(f" {reference} ", reference=reference)).value == 1.0, reference
        assert reward(Sample("()", reference=reference)).value == 0.0, reference
    alias = Sample('""', reference="''", metadata={"references": ["''", "empty string", '""']})
    assert reward(alias).value == 1.0


def test_sequential_guards_then_extraction_then_judge():
    judge, calls = always_yes()
    reward = Sequential(
        {
            "degenerate": DegenerateAnswer(),
            "echo": ReferenceEcho(),
            "answer": AnswerPresent(),
            "judge": Extract(judge, how=("boxed", "tags", "prefix")),
        }
    )
    prompt = "Compute the sum of the first ten positive integers."
    samples = [
        Sample("Solution:", prompt),
        Sample("Compute the sum of the first ten positive integers.", prompt),
        Sample("I computed it carefully and it is big.", prompt),
        Sample(r"1 + 2 + ... + 10 = \boxed{55}", prompt),
    ]
    scores = reward.batch(samples)
    assert [s.value for s in scores] == [0.0, 0.0, 0.0, 1.0]
    assert [s.reason.split(":")[0] for s in scores[:3]] == [
        "stopped at degenerate",
        "stopped at echo",
        "stopped at answer",
    ]
    assert calls == ["55"]  # the judge only ever saw the extracted answer


def test_extracting_before_a_numeric_verifier_ignores_decoy_numbers():
    reward = Gate(AnswerPresent(), Extract(NumericMatch(), how="boxed"))
    assert reward(Sample(r"Maybe 55? Or 56. \boxed{55}", reference="55")).value == 1.0
    assert reward(Sample("55 56 57 58", reference="55")).value == 0.0
