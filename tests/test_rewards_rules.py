"""Answer extraction and rule verifiers: real responses in, value + parts + reason out; bad input never raises."""

import json
import math

import pytest

from agentenv.errors import ConfigError
from agentenv.rewards.base import Gate, Sample, Sequential, WeightedSum
from agentenv.rewards.extract import (
    Extract,
    after_prefix,
    extract_answer,
    final_line,
    last_boxed,
    last_number,
    tagged,
)
from agentenv.rewards.rules import (
    ExactMatch,
    FormatCheck,
    NumericMatch,
    Quantity,
    RegexMatch,
    TestPassRatio,
    TokenF1,
    ToolCallValidity,
    json_schema_errors,
    normalize_answer,
    parse_quantity,
    parse_tool_calls,
)

# ---- extraction ---------------------------------------------------------------------------------------------


def test_last_boxed_keeps_nested_braces():
    text = r"First \boxed{1}, finally \boxed{\frac{a^{2}}{\sqrt{b}} + \{c\}}."
    assert last_boxed(text) == r"\frac{a^{2}}{\sqrt{b}} + \{c\}"


def test_last_boxed_reads_fbox_and_the_brace_free_form():
    assert last_boxed(r"so \fbox{7}") == "7"
    assert last_boxed(r"$\boxed 12$") == "12"


def test_unclosed_or_empty_box_is_no_answer():
    assert last_boxed(r"\boxed{12") is None
    assert last_boxed(r"\boxed{}") is None
    assert last_boxed("no box here") is None


def test_tagged_takes_the_last_block_of_the_configured_tag():
    text = "<think>maybe 3</think><answer>3</answer> wait <ANSWER>\n 4 \n</answer>"
    assert tagged(text) == "4"
    assert tagged("<final>x</final>", tag="final") == "x"
    assert tagged("<answer> . </answer>") is None


def test_after_prefix_reads_answer_labels_and_phrases():
    assert after_prefix("work...\nFinal answer: 42.") == "42"
    assert after_prefix("**Answer:** Paris") == "Paris"
    assert after_prefix("So the answer is $x=2$") == "$x=2$"
    assert after_prefix("Answer:\n\n  Tokyo\n") == "Tokyo"
    assert after_prefix("Answer:") is None
    assert after_prefix("three answers: 1, 2") is None


def test_final_line_skips_trailing_blank_lines():
    assert final_line("reasoning\n  result = 5  \n\n \n") == "result = 5"
    assert final_line("\n \n") is None


@pytest.mark.parametrize(
    "text, number",
    [
        ("total: -1,234.5 m", "-1,234.5"),
        ("about 3/4 of them", "3/4"),
        ("grew by 50%", "50%"),
        ("N = 6.02e23", "6.02e23"),
        (r"$3 \times 10^{5}$", r"3 \times 10^{5}"),
        ("water is H2O", None),
        ("between 3-4", "4"),
    ],
)
def test_last_number_as_written(text, number):
    assert last_number(text) == number


def test_auto_extraction_prefers_explicit_markers_over_the_last_line():
    assert extract_answer("<answer>The answer is \\boxed{9}</answer>\nbye") == "9"
    assert extract_answer("<answer>9</answer>\nbye") == "9"
    assert extract_answer("reasoning\n9") == "9"
    assert extract_answer("reasoning\n9", how=("boxed", "tags")) is None


def test_unknown_extraction_method_is_a_config_error_naming_how():
    with pytest.raises(ConfigError, match=r"how='boxes'.*Did you mean 'boxed'"):
        Extract(ExactMatch(), how="boxes")
    with pytest.raises(ConfigError, match="tag="):
        Extract(ExactMatch(), how="tags", tag="<answer>")


def test_extract_scores_the_inner_reward_on_the_answer_only():
    reward = Extract(ExactMatch(), how="boxed")
    score = reward(Sample(r"Long reasoning mentioning Paris... \boxed{Lyon}", reference="Lyon"))
    assert score.value == 1.0
    assert score.parts == {"extracted": 1.0, "reward": 1.0}
    assert score.details["answer"] == "Lyon"


def test_extract_without_an_answer_scores_zero_and_skips_the_inner_reward():
    score = Extract(ExactMatch(), how="boxed")(Sample("Paris", reference="Paris"))
    assert (score.value, score.parts, score.reason) == (0.0, {"extracted": 0.0}, "no answer found")


def test_extract_reference_reads_a_boxed_solution():
    reward = Extract(NumericMatch(), how="boxed", extract_reference=True)
    sample = Sample(r"\boxed{0.5}", reference=r"Halve it: $1/2 = \boxed{\frac{1}{2}}$, done in 2 steps.")
    assert reward(sample).value == 1.0


def test_extract_batches_mixed_samples_in_order():
    reward = Extract(ExactMatch(), how="tags")
    scores = reward.batch(
        [Sample("<answer>a</answer>", reference="a"), Sample("none"), Sample("<answer>b</answer>", reference="c")]
    )
    assert [s.value for s in scores] == [1.0, 0.0, 0.0]
    assert [s.parts["extracted"] for s in scores] == [1.0, 0.0, 1.0]


# ---- exact match, token F1 --------------------------------------------------------------------------------


def test_normalize_answer_is_squad_like_but_keeps_numbers_whole():
    assert normalize_answer("  The Quick, brown-FOX!  ") == "quick brownfox"
    assert normalize_answer("3.5") == "3.5" != normalize_answer("35")
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("−2") == "-2"


def test_normalize_answer_handles_unicode():
    assert normalize_answer("STRASSE") == normalize_answer("Straße")
    assert normalize_answer("Pa\u200bris") == "paris"  # zero-width space
    assert normalize_answer("ｐａｒｉｓ。") == "paris"  # full-width letters and stop
    assert normalize_answer("«Zürich»") == "zürich"


def test_exact_match_ignores_case_articles_punctuation_and_spacing():
    assert ExactMatch()(Sample("  the Eiffel   tower. ", reference="Eiffel Tower")).value == 1.0
    assert ExactMatch()(Sample("Eiffel", reference="Eiffel Tower")).value == 0.0


def test_exact_match_without_normalisation_is_strict():
    assert ExactMatch(normalize=False)(Sample(" Paris\n", reference="Paris")).value == 1.0
    assert ExactMatch(normalize=False)(Sample("paris", reference="Paris")).value == 0.0


def test_exact_match_accepts_any_listed_reference():
    sample = Sample("NYC", reference="New York City", metadata={"references": ["NYC", "New York"]})
    score = ExactMatch()(sample)
    assert score.value == 1.0 and score.details["matched"] == "NYC"


def test_exact_match_splits_the_reference_on_a_separator():
    assert ExactMatch(separator="|")(Sample("usa", reference="United States | USA | U.S.")).value == 1.0
    assert ExactMatch()(Sample("usa", reference="United States | USA")).value == 0.0


@pytest.mark.parametrize("reference", [None, "", "   "])
def test_missing_reference_scores_zero_with_a_reason(reference):
    for reward in (ExactMatch(), TokenF1(), NumericMatch()):
        score = reward(Sample("42", reference=reference))
        assert score.value == 0.0 and score.reason == "no reference"


def test_exact_match_of_an_empty_answer_is_zero_with_a_reason():
    assert ExactMatch()(Sample("", reference="x")).reason == "empty answer"
    assert ExactMatch()(Sample(" ?! ", reference="x")).reason == "empty answer"


def test_a_choice_letter_that_is_also_an_article_still_counts():
    assert ExactMatch()(Sample("A.", reference="a")).value == 1.0
    assert ExactMatch()(Sample("A", reference="B")).value == 0.0
    assert TokenF1()(Sample("A", reference="B")).value == 0.0


def test_bad_inputs_score_zero_instead_of_raising():
    for bad in (None, b"\xff\xfe", 3.5, "x" * 300_000, {"response": "a", "wrong_field": 1}):
        score = ExactMatch()(bad)
        assert score.value == 0.0 and score.reason


def test_token_f1_gives_partial_credit_with_precision_and_recall():
    score = TokenF1()(Sample("the Eiffel tower in Paris", reference="Eiffel Tower"))
    assert score.parts == {"precision": 0.5, "recall": 1.0}  # eiffel tower / eiffel tower in paris
    assert score.value == pytest.approx(2 / 3)


def test_token_f1_takes_the_best_reference():
    sample = Sample("New York", metadata={"references": ["Big Apple", "New York City"]})
    score = TokenF1()(sample)
    assert score.value == pytest.approx(0.8) and score.details["reference"] == "New York City"


def test_token_f1_of_disjoint_or_empty_answers_is_zero():
    assert TokenF1()(Sample("London", reference="Paris")).value == 0.0
    assert TokenF1()(Sample("", reference="Paris")).reason == "empty answer"


# ---- numeric match --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, quantity",
    [
        ("42", Quantity(42.0)),
        ("-1,234,567.25", Quantity(-1234567.25)),
        ("3/4", Quantity(0.75)),
        (r"-\dfrac{1}{2}", Quantity(-0.5)),
        ("½", Quantity(0.5)),
        ("1.5e-3", Quantity(0.0015)),
        (r"3 \times 10^{5}", Quantity(300000.0)),
        ("3×10⁵", Quantity(300000.0)),
        ("2^{10}", Quantity(1024.0)),
        ("$1,000", Quantity(1000.0)),
        ("€ 12.50", Quantity(12.5)),
        ("25%", Quantity(25.0, "%")),
        ("x = 7 kg.", Quantity(7.0, "kg")),
        (r"5\text{ km}", Quantity(5.0, "km")),
        ("90 km/h", Quantity(90.0, "km/h")),
        ("12 apples", Quantity(12.0)),
        ("It took 3 steps to get 12.", Quantity(12.0)),
    ],
)
def test_parse_quantity_reads_numbers_as_answers_write_them(text, quantity):
    assert parse_quantity(text) == quantity


@pytest.mark.parametrize("text", ["", "no digits", "1/0", "1e999", "∞", "1 x 10^999", "0^{-1}"])
def test_parse_quantity_of_non_numbers_is_none(text):
    assert parse_quantity(text) is None


def match(answer, reference, **kwargs):
    return NumericMatch(**kwargs)(Sample(answer, reference=reference)).value


def test_numeric_match_compares_values_not_spellings():
    assert match("0.75", "3/4") == 1.0
    assert match("1,000", "1000.0") == 1.0
    assert match("1e3", "$1000") == 1.0
    assert match("1001", "1000") == 0.0


def test_numeric_match_tolerances():
    assert match("3.14159", "3.1416", rel_tol=1e-4) == 1.0
    assert match("3.14159", "3.1416") == 0.0
    assert match("0.001", "0", abs_tol=0.01) == 1.0


@pytest.mark.parametrize(
    "answer, reference",
    [("1.5 km", "1500 m"), ("250 cm", "2.5 meters"), ("2 kg", "2000 g"), ("90 min", "1.5 h"), ("90 km/h", "25 m/s")],
)
def test_numeric_match_converts_units(answer, reference):
    assert match(answer, reference, units="convert") == 1.0
    assert match(answer, reference, units="ignore") == 0.0


def test_numeric_match_rejects_units_of_another_dimension():
    assert match("5 kg", "5 km") == 0.0
    assert match("5 kg", "5 km", units="ignore") == 1.0


def test_a_bare_number_takes_the_other_sides_unit_unless_strict():
    assert match("1500", "1500 m") == 1.0
    assert match("1500", "1.5 km") == 0.0
    assert match("1500", "1500 m", units="strict") == 0.0
    assert match("1500 m", "1.5 km", units="strict") == 1.0


def test_percentages_match_their_number_or_fraction():
    assert match("50%", "0.5") == 1.0
    assert match("50%", "50") == 1.0
    assert match("50 percent", "50%") == 1.0
    assert match("50%", "0.5", units="strict") == 0.0


def test_numeric_match_reasons():
    assert NumericMatch()(Sample("no idea", reference="4")).reason == "no number in the answer"
    assert "not a number" in NumericMatch()(Sample("4", reference="four")).reason
    assert "does not equal 5" in NumericMatch()(Sample("4", reference="5")).reason


def test_numeric_match_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="units='metric'"):
        NumericMatch(units="metric")
    with pytest.raises(ConfigError, match="rel_tol"):
        NumericMatch(rel_tol=-1)
    with pytest.raises(ConfigError, match="extra_units"):
        NumericMatch(extra_units={"mi": ("length", 0)})


def test_extra_units_extend_the_table():
    assert match("1 mi", "1609.344 m", extra_units={"mi": ("length", 1609.344)}) == 1.0


def test_numeric_match_on_the_extracted_last_number():
    reward = Extract(NumericMatch(), how="last_number")
    assert reward(Sample("Adding 2 and 3 gives 5.", reference="5")).value == 1.0


# ---- regex and format -----------------------------------------------------------------------------------


def test_regex_match_search_and_full():
    assert RegexMatch(r"\d+")(Sample("it is 42")).value == 1.0
    assert RegexMatch(r"\d+", full=True)(Sample("it is 42")).value == 0.0
    assert RegexMatch(r"\d+", full=True)(Sample(" 42\n")).value == 1.0


def test_regex_match_reports_the_match_and_the_miss():
    assert RegexMatch(r"[A-D]\)")(Sample("I pick C) here")).details["match"] == "C)"
    assert "does not occur" in RegexMatch(r"[A-D]\)")(Sample("none")).reason


def test_bad_regex_is_a_config_error():
    with pytest.raises(ConfigError, match="pattern='\\(unclosed'"):
        RegexMatch("(unclosed")


def test_format_check_requires_each_tag_exactly_once():
    check = FormatCheck(["think", "answer"])
    good = check(Sample("<think>2+2</think>\n<answer>4</answer>"))
    assert good.value == 1.0 and good.parts == {"non_empty": 1.0, "tag.think": 1.0, "tag.answer": 1.0}
    twice = check(Sample("<think>a</think><answer>4</answer><answer>5</answer>"))
    assert twice.value == 0.0 and twice.parts["tag.answer"] == 0.0 and "2 open" in twice.reason
    unclosed = check(Sample("<think>a</think><answer>4"))
    assert unclosed.parts["tag.answer"] == 0.0


def test_format_check_order_and_mean():
    check = FormatCheck(["think", "answer"], ordered=True, combine="mean")
    score = check(Sample("<answer>4</answer><think>x</think>"))
    assert score.parts["order"] == 0.0
    assert score.value == pytest.approx(3 / 4)


def test_format_check_length_and_emptiness():
    check = FormatCheck(max_chars=10)
    assert check(Sample("short")).value == 1.0
    assert check(Sample("much too long")).parts == {"non_empty": 1.0, "max_chars": 0.0}
    assert check(Sample("   ")).reason == "empty response"


def test_format_check_that_checks_nothing_is_a_config_error():
    with pytest.raises(ConfigError, match="checks nothing"):
        FormatCheck(non_empty=False)
    with pytest.raises(ConfigError, match="max_chars=0"):
        FormatCheck(max_chars=0)


# ---- test pass ratio -------------------------------------------------------------------------------------


def with_tests(tests, **meta):
    return Sample("diff --git ...", metadata={"tests": tests, **meta})


def test_pass_ratio_over_all_reported_tests():
    score = TestPassRatio()(with_tests({"t1": "passed", "t2": "FAILED", "t3": "error", "t4": "PASSED"}))
    assert score.value == 0.5 and score.reason == "2/4 tests passed"


def test_pass_ratio_counts_only_fail_to_pass_and_pass_to_pass_when_given():
    results = {"new": "passed", "old1": "passed", "old2": "failed", "unrelated": "failed"}
    score = TestPassRatio()(with_tests(results, FAIL_TO_PASS=["new", "missing"], PASS_TO_PASS=["old1", "old2"]))
    assert score.value == 0.5
    assert score.parts == {"fail_to_pass": 0.5, "pass_to_pass": 0.5, "ratio": 0.5}


def test_pass_ratio_reads_swe_bench_json_lists():
    score = TestPassRatio()(with_tests({"a": "passed", "b": "xfail"}, FAIL_TO_PASS=json.dumps(["a", "b"])))
    assert score.value == 1.0


def test_pass_ratio_binary_is_resolved_or_not():
    assert TestPassRatio("binary")(with_tests({"a": "passed", "b": "failed"})).value == 0.0
    assert TestPassRatio("binary")(with_tests({"a": "passed", "b": True})).value == 1.0


def test_pass_ratio_from_counts():
    assert TestPassRatio()(with_tests({"passed": 3, "failed": 1})).value == 0.75
    assert TestPassRatio()(with_tests({"passed": 3, "total": 6})).value == 0.5
    assert TestPassRatio()(with_tests({"test_a": 1, "test_b": "passed"})).value == 0.5  # names, not counts


def test_pass_ratio_without_results_is_zero_with_a_reason():
    assert TestPassRatio()(Sample("patch")).reason == "no test results in metadata['tests']"
    assert TestPassRatio()(with_tests({"passed": 0, "failed": 0})).reason == "no tests ran"


def test_pass_ratio_mode_is_checked():
    with pytest.raises(ConfigError, match="mode='all'"):
        TestPassRatio("all")


# ---- tool calls ---------------------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "k": {"type": "integer"},
                    "mode": {"type": "string", "enum": ["bm25", "dense"]},
                    "filters": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["query"],
            },
        },
    },
    {"name": "finish", "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}}},
]


def tool_score(response, combine="mean", **meta):
    return ToolCallValidity(combine=combine)(Sample(response, metadata={"tools": TOOLS, **meta}))


def test_valid_tool_call_blocks_score_one_on_every_part():
    response = 'I will search.\n<tool_call>\n{"name": "search", "arguments": {"query": "bm25", "k": 5}}\n</tool_call>'
    score = tool_score(response)
    assert score.value == 1.0 and score.parts == {"format": 1.0, "name": 1.0, "arguments": 1.0}


def test_tool_call_as_bare_json_openai_message_or_metadata():
    assert tool_score('{"name": "finish", "arguments": {"answer": "42"}}').value == 1.0
    assert tool_score('```json\n[{"name": "finish", "parameters": {"answer": "42"}}]\n```').value == 1.0
    message = {"tool_calls": [{"type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}}]}
    assert tool_score(json.dumps(message)).value == 1.0
    assert tool_score("", tool_calls=[{"name": "search", "arguments": {"query": "x"}}]).value == 1.0


def test_unknown_tool_fails_name_and_arguments():
    score = tool_score('<tool_call>{"name": "browse", "arguments": {}}</tool_call>')
    assert score.parts == {"format": 1.0, "name": 0.0, "arguments": 0.0}
    assert score.value == pytest.approx(1 / 3) and "unknown tool" in score.reason


def test_schema_violations_fail_arguments():
    bad = [
        ('{"k": 3}', "missing required 'query'"),
        ('{"query": 7}', "arguments.query: expected string, got integer"),
        ('{"query": "x", "k": "5"}', "arguments.k: expected integer"),
        ('{"query": "x", "k": true}', "got boolean"),
        ('{"query": "x", "mode": "fuzzy"}', "not one of ['bm25', 'dense']"),
        ('{"query": "x", "filters": ["a", 2]}', "arguments.filters[1]: expected string"),
    ]
    for arguments, reason in bad:
        score = tool_score(f'<tool_call>{{"name": "search", "arguments": {arguments}}}</tool_call>')
        assert score.parts == {"format": 1.0, "name": 1.0, "arguments": 0.0}, arguments
        assert reason in score.reason, (arguments, score.reason)


def test_unparsable_tool_call_fails_format():
    score = tool_score('<tool_call>{"name": "search", "arguments": {"query": </tool_call>')
    assert score.parts == {"format": 0.0, "name": 0.0, "arguments": 0.0} and "not valid JSON" in score.reason


def test_parts_are_fractions_over_several_calls_and_product_is_strict():
    response = (
        '<tool_call>{"name": "search", "arguments": {"query": "a"}}</tool_call>'
        '<tool_call>{"name": "search", "arguments": {"k": 1}}</tool_call>'
    )
    assert tool_score(response).parts == {"format": 1.0, "name": 1.0, "arguments": 0.5}
    assert tool_score(response, combine="product").value == 0.5


def test_no_tool_call_or_no_schemas_scores_zero_with_a_reason():
    assert tool_score("I think the answer is 42.").reason == "no tool call found"
    score = ToolCallValidity()(Sample('{"name": "search", "arguments": {}}'))
    assert score.value == 0.0 and "metadata['tools']" in score.reason


def test_parse_tool_calls_tolerates_a_missing_close_tag():
    calls = parse_tool_calls('<tool_call>{"name": "finish", "arguments": {"answer": "x"}}')
    assert [c.name for c in calls] == ["finish"]


def test_json_schema_subset():
    schema = {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}, "additionalProperties": False}
    assert json_schema_errors({"n": None}, schema) == []
    assert json_schema_errors({"n": 2.0}, schema) == []
    assert json_schema_errors({"m": 1}, schema) == ["arguments: unexpected 'm'"]
    assert json_schema_errors("x", {"type": "object"}) == ["arguments: expected object, got string"]
    assert json_schema_errors({"a": 1}, {"type": "object", "minProperties": 3}) == []  # unknown keywords: lenient


def test_tool_call_validity_combine_is_checked():
    with pytest.raises(ConfigError, match="combine='min'"):
        ToolCallValidity(combine="min")


# ---- composition with the base containers -----------------------------------------------------------------


def test_weighted_sum_of_rule_verifiers_logs_every_part():
    reward = WeightedSum(
        format=(FormatCheck(["answer"]), 0.2), correct=(Extract(NumericMatch(), how="tags"), 0.8), normalize=True
    )
    score = reward(Sample("<answer>1,500 m</answer>", reference="1.5 km"))
    assert score.value == pytest.approx(1.0)
    assert score.parts["correct.extracted"] == 1.0 and score.parts["format.tag.answer"] == 1.0
    wrong = reward(Sample("<answer>2 km</answer>", reference="1.5 km"))
    assert wrong.value == pytest.approx(0.2)


def test_sequential_format_then_answer():
    reward = Sequential({"format": FormatCheck(["answer"]), "answer": Extract(ExactMatch(), how="tags")})
    assert reward(Sample("<answer>Paris</answer>", reference="paris")).value == 1.0
    stopped = reward(Sample("Paris", reference="paris"))
    assert stopped.value == 0.0 and stopped.reason.startswith("stopped at format")
    assert "answer" not in stopped.parts


def test_gate_on_tool_call_format():
    reward = Gate(ToolCallValidity(), TokenF1(), threshold=1.0)
    sample = Sample('{"name": "finish", "arguments": {}}', reference="x", metadata={"tools": TOOLS})
    assert reward(sample).parts["gate"] == 1.0
    assert math.isclose(reward(Sample("no call", reference="x", metadata={"tools": TOOLS})).value, 0.0)
