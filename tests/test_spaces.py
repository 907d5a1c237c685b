import pickle

import numpy as np
import pytest

from agentenv import ActionSpace, TextSpace, ToolCall


def test_text_space_contains_any_unicode_up_to_max_length():
    space = TextSpace(max_length=10)
    assert "héllo 世界 ✓" in space
    assert "" in space
    assert "x" * 11 not in space


def test_text_space_rejects_non_strings():
    space = TextSpace(max_length=10)
    assert 5 not in space
    assert b"bytes" not in space
    assert None not in space


def test_text_space_sample_is_seeded_and_inside_the_space():
    a, b = TextSpace(100, seed=3), TextSpace(100, seed=3)
    samples = [a.sample() for _ in range(20)]
    assert samples == [b.sample() for _ in range(20)]
    assert all(s in a for s in samples)


def test_text_space_rejects_bad_construction():
    with pytest.raises(ValueError, match="max_length"):
        TextSpace(0)
    with pytest.raises(ValueError, match="min_length"):
        TextSpace(5, min_length=6)


def test_action_space_admits_tool_calls():
    space = ActionSpace(100)
    assert ToolCall("search", {"query": "x"}) in space
    assert [ToolCall("a"), ToolCall("b")] in space
    assert [] not in space
    assert "free text" in space


def test_spaces_pickle_and_compare_equal():
    space = ActionSpace(77, min_length=1)
    again = pickle.loads(pickle.dumps(space))
    assert again == space and again != TextSpace(77, min_length=1)


def test_text_space_sample_refuses_masks():
    with pytest.raises(NotImplementedError):
        TextSpace(10).sample(mask=np.ones(3))
