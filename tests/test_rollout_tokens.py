"""Token-exact rollouts: the ids trained on are the ids the model saw and generated."""

import math

import pytest

import agentenv
from agentenv import TextEnv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies import Generation, Sampling, TransformersPolicy
from agentenv.rollout import rollout

# A reasoning model's template: earlier assistant turns lose their <think> block when the history is re-rendered.
STRIPPING_TEMPLATE = (
    "{% for m in messages %}{% set content = m['content'] %}"
    "{% if m['role'] == 'assistant' %}{% set content = content.split('</think>')[-1].lstrip() %}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


class ScriptedTokens:
    """A token-level policy that 'generates' given texts (canonical ids + end of turn), to pin exact expectations."""

    def __init__(self, tokenizer, texts, end=True):
        self.tokenizer, self.texts, self.end, self.calls = tokenizer, list(texts), end, 0

    def generate(self, prompts, sampling=None):
        out = []
        for _ in prompts:
            text = self.texts[self.calls % len(self.texts)]
            self.calls += 1
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = [*ids, self.tokenizer.eos_token_id] if self.end else ids
            out.append(Generation(ids, [-0.5] * len(ids), "stop" if self.end else "length", text))
        return out


def as_chat(trajectory):
    """The episode as messages, every turn's text re-rendered: what re-templating the history would encode."""
    chat = [
        {"role": "system", "content": trajectory.instructions},
        {"role": "user", "content": trajectory.first_observation},
    ]
    for turn in trajectory.turns:
        chat += [{"role": "assistant", "content": turn.action}, {"role": "user", "content": turn.observation}]
    return chat


def keydoor():
    return agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=4)


def test_chatml_deltas_equal_rendering_the_whole_conversation(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    texts = ["look", "go north", "take the coin"]
    [trajectory] = rollout([keydoor()], ScriptedTokens(tokenizer, texts), fmt, [3])
    rendered = fmt.encode(fmt.render(as_chat(trajectory)[:-1], add_generation_prompt=False))
    assert trajectory.token_ids == rendered[: len(trajectory.token_ids)]
    assert len(rendered) - len(trajectory.token_ids) == len(fmt.encode("\n"))  # only the template's final newline


def test_reasoning_stripping_template_keeps_the_generated_thoughts(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer, chat_template=STRIPPING_TEMPLATE)
    texts = ["<think>the coin may be north</think> go north", "<think>try looking</think> look"]
    [trajectory] = rollout([keydoor()], ScriptedTokens(tokenizer, texts), fmt, [3], record_prompts=True)
    ids = trajectory.token_ids
    for k, (prompt, (start, end)) in enumerate(zip(trajectory.prompts, trajectory.turn_spans, strict=True)):
        assert ids[: len(prompt)] == prompt, f"turn {k}: what the model saw is not a prefix of the trajectory"
        assert start == len(prompt)
        assert tokenizer.decode(ids[start:end], skip_special_tokens=True) == texts[k % 2]
    rerendered = fmt.encode(fmt.render(as_chat(trajectory)[:-1], add_generation_prompt=False))
    assert "the coin may be north" not in tokenizer.decode(rerendered)  # re-templating would erase the thought
    assert "the coin may be north" in tokenizer.decode(ids)  # the trajectory keeps what was generated


def test_loss_mask_covers_exactly_the_agent_tokens_and_rewards_sit_on_turn_ends(tiny):
    _, tokenizer = tiny
    [trajectory] = rollout([keydoor()], ScriptedTokens(tokenizer, ["look", "dance"]), ChatFormat(tokenizer), [0])
    agent = {i for start, end in trajectory.turn_spans for i in range(start, end)}
    assert {i for i, m in enumerate(trajectory.loss_mask) if m} == agent
    assert len(trajectory.loss_mask) == len(trajectory.token_ids) == len(trajectory.logprobs)
    assert all(trajectory.logprobs[i] == -0.5 for i in agent)
    assert all(trajectory.logprobs[i] == 0.0 for i in range(len(trajectory.token_ids)) if i not in agent)
    assert trajectory.reward_positions == [end - 1 for _, end in trajectory.turn_spans]
    assert all(trajectory.token_ids[p] == tokenizer.eos_token_id for p in trajectory.reward_positions)
    assert len(trajectory.turn_rewards) == len(trajectory.turns) == 4 and trajectory.truncated


def test_a_turn_cut_off_by_length_gets_its_end_of_turn_as_an_env_token(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    [trajectory] = rollout([keydoor()], ScriptedTokens(tokenizer, ["look"], end=False), fmt, [0])
    _, end = trajectory.turn_spans[0]
    assert trajectory.token_ids[end] == tokenizer.eos_token_id and trajectory.loss_mask[end] == 0


def test_context_budget_truncates_explicitly(tiny):
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=16, temperature=1.0, seed=1))
    env = agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=50)
    [trajectory] = rollout([env], policy, ChatFormat(tokenizer), [0], max_context_tokens=700)
    assert trajectory.truncated and trajectory.context_truncated and not trajectory.terminated
    assert len(trajectory.token_ids) <= 700 and len(trajectory.token_ids) == trajectory.turn_spans[-1][1]


class Crashes(TextEnv):
    instructions = "Say anything."

    def _reset(self, task_seed, options):
        self.crash_at = task_seed % 3
        return "Hello.", {}

    def _step(self, action):
        if self.turn > self.crash_at:
            raise RuntimeError("the env worker died")
        return "Go on.", 0.0, False, {}


def test_a_crashing_env_fails_its_episode_and_the_batch_goes_on(tiny):
    _, tokenizer = tiny
    envs = [Crashes(max_turns=5), agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=3)]
    trajectories = rollout(envs, ScriptedTokens(tokenizer, ["look"]), ChatFormat(tokenizer), range(4))
    assert [t.seed for t in trajectories] == [0, 1, 2, 3]  # in the order asked, whatever finished first
    crashed = [t for t in trajectories if t.error]
    assert crashed and all("the env worker died" in t.error for t in crashed)
    assert any(t.truncated and not t.error for t in trajectories)


def test_transformers_policy_batches_with_left_padding_and_reports_logprobs(tiny):
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=6, temperature=0.0), batch_size=4)
    fmt = ChatFormat(tokenizer)
    prompts = [fmt.start([{"role": "user", "content": text}]) for text in ("hi", "go north now please", "look")]
    batched = policy.generate(prompts)
    alone = [policy.generate([p])[0] for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]  # greedy: padding changes nothing
    for g in batched:
        assert len(g.logprobs) == len(g.token_ids) and all(math.isfinite(x) and x <= 0 for x in g.logprobs)
        assert g.finish_reason in ("stop", "length")


def test_chat_format_refuses_a_template_without_the_eos_turn_marker(tiny):
    _, tokenizer = tiny
    with pytest.raises(ConfigError, match="eos token"):
        ChatFormat(tokenizer, chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}")


@pytest.mark.slow
def test_default_model_template_deltas_are_exact():
    from agentenv.models import load_model

    _, tokenizer = load_model("default")
    fmt = ChatFormat(tokenizer)
    texts = ["look around", "go north"]
    [trajectory] = rollout([keydoor()], ScriptedTokens(tokenizer, texts), fmt, [1])
    rendered = fmt.encode(fmt.render(as_chat(trajectory)[:-1], add_generation_prompt=False))
    assert trajectory.token_ids == rendered[: len(trajectory.token_ids)]


def test_wilson_interval_is_sane_at_the_edges():
    from agentenv.rollout import wilson_interval

    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35
    low, high = wilson_interval(10, 10)
    assert 0.65 < low < 0.75 and high == 1.0
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and math.isclose(low + high, 1.0)


def test_difference_interval_finds_a_rise_that_overlapping_wilson_intervals_hide():
    from agentenv.rollout import difference_interval, wilson_interval

    # 150/256 after against 120/256 before: the Wilson intervals overlap, the difference's interval is above 0.
    assert wilson_interval(150, 256)[0] < wilson_interval(120, 256)[1]
    diff, low, high = difference_interval(150, 256, 120, 256)
    assert math.isclose(diff, 30 / 256) and math.isclose(high - diff, diff - low)
    pa, pb = 151 / 258, 121 / 258  # Agresti-Caffo: one success and one failure added to each side
    assert math.isclose(diff - low, 1.96 * math.sqrt(pa * (1 - pa) / 258 + pb * (1 - pb) / 258))
    assert 0.02 < low < 0.04
    back = difference_interval(120, 256, 150, 256)  # swapped: the same interval, negated
    assert all(math.isclose(x, -y) for x, y in zip(back, (diff, high, low), strict=True))
    assert difference_interval(0, 32, 0, 32)[1] < 0 < difference_interval(0, 32, 0, 32)[2]  # 0/n keeps a width
    assert math.isnan(difference_interval(1, 2, 0, 0)[0])


def test_paired_difference_interval_resolves_a_rise_on_the_same_games_that_the_unpaired_one_cannot():
    from agentenv.rollout import difference_interval, paired_difference_interval

    # 256 games, each played before and after: 192 won both times, 45 lost both times, 15 gained, 4 lost.
    before = [True] * 192 + [False] * 45 + [False] * 15 + [True] * 4
    after = [True] * 192 + [False] * 45 + [True] * 15 + [False] * 4
    assert difference_interval(sum(after), 256, sum(before), 256)[1] < 0  # as independent samples: not resolved
    paired = paired_difference_interval(after, before)
    assert (paired["n"], paired["gained"], paired["lost"]) == (256, 15, 4)
    assert math.isclose(paired["difference"], 11 / 256)
    g, lo = 15.5 / 258, 4.5 / 258  # Agresti-Min: 0.5 added to each cell
    assert math.isclose(paired["high"] - paired["low"], 2 * 1.96 * math.sqrt((g + lo - (g - lo) ** 2) / 258))
    assert 0.005 < paired["low"] < 0.015 and 0.07 < paired["high"] < 0.08
    # McNemar's exact test: P(X <= 4) for X ~ Binomial(19, 1/2), both tails.
    assert math.isclose(paired["p"], 2 * (1 + 19 + 171 + 969 + 3876) / 2**19)
    back = paired_difference_interval(before, after)  # swapped: the same interval, negated, the same p
    assert math.isclose(back["low"], -paired["high"]) and math.isclose(back["p"], paired["p"])
    same = paired_difference_interval(before, before)  # no discordant pair: no evidence either way
    assert same["difference"] == 0 and same["p"] == 1.0 and same["low"] < 0 < same["high"]
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference_interval(after, before[:-1])


def test_eval_command_runs_a_local_model_and_writes_trajectories_and_html(tiny, tmp_path):
    from typer.testing import CliRunner

    from agentenv.cli import app

    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    args = ["eval", "AgentEnv/KeyDoor-s2k0d1-v0", "--policy", f"model:{tmp_path / 'tiny'}", "--episodes", "3"]
    args += ["--batch-size", "2", "--max-new-tokens", "4", "-o", str(tmp_path / "t.jsonl")]
    args += ["--html", str(tmp_path / "t.html")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "success rate" in result.output and "95% CI" in result.output and "invalid rate" in result.output
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"loss_mask"' in lines[0]
    assert (tmp_path / "t.html").read_text().count("<details>") == 3


def test_tool_env_turns_come_back_as_tool_messages_token_exactly(tiny):
    from agentenv.policies import tool_chat_format

    _, tokenizer = tiny
    env = agentenv.make("AgentEnv/Search-World-h1-v0", max_turns=3)
    fmt = tool_chat_format(tokenizer, env.unwrapped.tools)
    assert "search" in fmt.render([{"role": "system", "content": "S"}], add_generation_prompt=True)
    texts = ['<tool_call>{"name": "search", "arguments": {"query": "mayor"}}</tool_call>', "no call here", "done?"]
    [trajectory] = rollout([env], ScriptedTokens(tokenizer, texts), fmt, [0])
    assert [t.invalid_action for t in trajectory.turns] == [False, True, True]
    chat = [
        {"role": "system", "content": trajectory.instructions},
        {"role": "user", "content": trajectory.first_observation},
        {"role": "assistant", "content": texts[0]},
        {"role": "tool", "content": trajectory.turns[0].observation, "name": "search"},
        {"role": "assistant", "content": texts[1]},
        {"role": "user", "content": trajectory.turns[1].observation},
        {"role": "assistant", "content": texts[2]},
    ]
    rendered = fmt.encode(fmt.render(chat, add_generation_prompt=False))
    assert trajectory.token_ids == rendered[: len(trajectory.token_ids)]
    assert "<tool_response>" in tokenizer.decode(trajectory.token_ids)


def test_episode_progress_moves_turn_by_turn_and_counts_whole_episodes():
    from agentenv.rollout import EpisodeProgress, Trajectory

    moves: list[float] = []
    bar = EpisodeProgress(moves.append, max_turns=4)
    first, second = (Trajectory("env", "policy", seed, "", "", "", None) for seed in (0, 1))
    for _ in range(3):
        bar.turn(first)
        bar.turn(second)
    assert moves[:2] == [0.25, 0.25] and sum(moves) == 1.5  # three turns of two 4-turn episodes
    for _ in range(5):  # past the turn limit (budget_factor): the bar creeps, never counts the episode done
        bar.turn(first)
    assert sum(moves) < 2.0
    bar.episode(first)
    bar.episode(second)
    assert abs(sum(moves) - 2.0) < 1e-9


def test_rollout_calls_on_turn_after_each_turn_of_an_episode_that_goes_on(tiny):
    _, tokenizer = tiny
    envs = [agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0", max_turns=3) for _ in range(2)]
    turns, ends = [], []
    played = rollout(envs, ScriptedTokens(tokenizer, ["look"]), ChatFormat(tokenizer), range(3),
                     on_turn=turns.append, on_episode=ends.append)  # fmt: skip
    assert [len(t.turns) for t in played] == [3, 3, 3] and len(ends) == 3
    assert len(turns) == 6 and all(t in played for t in turns)  # turns 1 and 2 of each; the 3rd ends it


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_a_long_generation_reports_its_tokens_as_it_decodes(tiny, prefix_cache):
    """``on_tokens(done, limit)`` every 16 decode steps, on both generation paths (reusing KV and model.generate)."""
    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=40, temperature=1.0, seed=3),
                                prefix_cache=prefix_cache)  # fmt: skip
    reports: list[tuple[int, int]] = []
    policy.on_tokens = lambda done, limit: reports.append((done, limit))
    prompt = tokenizer("You are in a room.", add_special_tokens=False)["input_ids"]
    generations = policy.generate([prompt, prompt[:3]])
    longest = max(len(g.token_ids) for g in generations)
    assert longest > 16, "the tiny model's sampled turn should run past 16 tokens"
    assert reports[0] == (16, 40) and all(limit == 40 for _, limit in reports)
    assert [done for done, _ in reports] == [k for k in (16, 32) if k <= longest][: len(reports)]
    assert (32, 40) in reports or longest <= 32


def test_rollout_shows_a_long_generation_on_the_bar_and_clears_it(tiny):
    from agentenv.rollout import EpisodeProgress

    model, tokenizer = tiny
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=40, temperature=1.0, seed=1))
    moves, notes = [], []
    bar = EpisodeProgress(moves.append, max_turns=2, note=notes.append)
    envs = [agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=2) for _ in range(2)]
    played = rollout(envs, policy, ChatFormat(tokenizer), range(2), on_episode=bar.episode, on_turn=bar.turn,
                     on_tokens=bar.tokens)  # fmt: skip
    assert "generating 16/40 tokens" in notes and notes[-1] == ""  # shown during decoding, cleared after the turn
    assert abs(sum(moves) - len(played)) < 1e-9
    assert policy.on_tokens is None  # the rollout's listener does not outlive it
