import inspect
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub
os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"

import pytest
from gymnasium.envs.registration import EnvSpec

import agentenv
from agentenv import ConfigError, TextEnv
from agentenv.integrations.trl import (
    EPISODE_OVER,
    FINAL_ANSWER,
    ToolCallChatFormat,
    ToolLoop,
    ensure_tool_template,
    environment_factory,
    evaluate_tool_loop,
    trl_dataset,
    walkthrough_chats,
)
from agentenv.tool_calls import tool_call_text

KEYDOOR = "AgentEnv/KeyDoor-s2k0d1-v0"


class CounterEnv(TextEnv):
    """A tool-using probe: ``add`` to a counter, ``submit`` it; solved when the counter hits the task's target."""

    family = "probe"
    tools = (
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add to the counter.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "amount": {"type": "integer", "description": "How much to add."},
                        "unit": {"type": "string", "enum": ["ones", "tens"], "description": "The scale."},
                    },
                    "required": ["amount"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "submit",
                "description": "Submit the counter.",
                "parameters": {
                    "type": "object",
                    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
                },
            },
        },
    )

    def _reset(self, task_seed, options):
        self.target, self.count = 3 + task_seed % 5, 0
        return f"Reach {self.target}.", {}

    def _step(self, action):
        if action.name == "add":
            self.count += action.arguments["amount"] * (10 if action.arguments.get("unit") == "tens" else 1)
            return f"count={self.count}", 0.0, False, {}
        solved = self.count == self.target
        return f"submitted {self.count} {action.arguments.get('tags')}", float(solved), True, {"success": solved}


COUNTER = EnvSpec(id="Counter-v0", entry_point=CounterEnv)


# ---- the class contract -----------------------------------------------------------------------------------
def test_reset_returns_the_first_observation_of_the_seed():
    Env = environment_factory(KEYDOOR)
    env, reference = Env(), agentenv.make(KEYDOOR)
    observation, info = reference.reset(seed=3)
    instructions = info["instructions"]
    assert env.reset(seed=3) == f"{instructions}\n\n{observation}"  # no prompt: the instructions come first
    system = [{"role": "system", "content": instructions}, {"role": "user", "content": ""}]
    assert env.reset(seed=3, prompt=system) == observation
    asked = [{"role": "system", "content": instructions}, {"role": "user", "content": "Play this:"}]
    assert env.reset(seed=3, prompt=asked) == f"\n\n{observation}"  # TRL appends it to the user message
    assert env.task_id == info["task_id"] and env.observation == observation


@pytest.mark.parametrize("reward", ["sparse", "dense"])
def test_act_plays_the_walkthrough_and_get_reward_is_the_env_return(reward):
    env, reference = environment_factory(KEYDOOR, reward=reward)(), agentenv.make(KEYDOOR, reward=reward)
    env.reset(seed=4)
    reference.reset(seed=4)
    walkthrough = env.env.unwrapped.walkthrough()
    assert walkthrough and len(walkthrough) > 1
    total = 0.0
    for step, command in enumerate(walkthrough, 1):
        text = env.act(command)
        observation, r, terminated, _, info = reference.step(command)
        total += r
        assert text.startswith(observation) and env.turns == step
    assert terminated and info["success"] and env.done and env.success
    assert text.endswith("The episode is over: the task is solved.")
    assert env.get_reward() == pytest.approx(total) and total > 0
    assert env.act("look") == EPISODE_OVER and env.turns == len(walkthrough)
    assert env.get_reward() == pytest.approx(total)


def test_score_success_and_the_turn_limit_note():
    env = environment_factory(KEYDOOR, score="success", max_turns=2, invalid_action_penalty=0.5)()
    env.reset(seed=0)
    env.act("dance")
    last = env.act("dance")
    assert env.done and not env.success and env.episode_return == -1.0
    assert last.endswith("The episode is over: the turn limit (2 turns) is reached.")
    assert env.get_reward() == 0.0
    env.reset(seed=0)  # a new episode starts from scratch
    assert (env.turns, env.episode_return, env.done) == (0, 0.0, False)
    with pytest.raises(ConfigError, match="score"):
        environment_factory(KEYDOOR, score="turns")


def test_reset_plays_the_task_id_then_the_seed_then_the_next_task():
    Env = environment_factory(KEYDOOR)
    env = Env()
    row = trl_dataset(KEYDOOR, split="validation", n=2, start=5)[0]
    env.reset(**row)  # a validation row replays its task on an env made for the train split
    validation = agentenv.make(KEYDOOR, split="validation")
    observation, info = validation.reset(seed=5)
    assert env.task_id == row["task_id"] == info["task_id"] and env.observation == observation
    env.reset(seed=7)
    assert env.task_id == "keydoor-s2k0d1-7"
    played = []
    for _ in range(3):
        Env().reset()  # instances share the class's counter
        env.reset(prompt=[{"role": "user", "content": ""}])
        played.append(env.task_id)
    assert played == ["keydoor-s2k0d1-1", "keydoor-s2k0d1-3", "keydoor-s2k0d1-5"]
    assert environment_factory(KEYDOOR)()._seeds is not Env._seeds  # each class counts from task 0
    Pairs = environment_factory(KEYDOOR, group_size=2)
    pairs = [Pairs() for _ in range(4)]
    for env in pairs:
        env.reset(prompt=[{"role": "user", "content": ""}])
    assert [env.task_id for env in pairs] == ["keydoor-s2k0d1-0"] * 2 + ["keydoor-s2k0d1-1"] * 2


def test_tools_need_reset_first_and_non_text_envs_are_refused():
    env = environment_factory(KEYDOOR)()
    with pytest.raises(RuntimeError, match="reset"):
        env.act("look")
    with pytest.raises(ConfigError, match="TextEnv"):
        environment_factory("CartPole-v1")


def test_the_class_exposes_only_its_tools_to_trl():
    """TRL's discovery: public functions of the class, minus reset and get_reward."""
    for Env, expected in [(environment_factory(KEYDOOR), ["act"]), (environment_factory(COUNTER), ["add", "submit"])]:
        members = inspect.getmembers(Env, predicate=inspect.isfunction)
        tools = [name for name, _ in members if name not in ("reset", "get_reward") and not name.startswith("_")]
        assert tools == expected
        assert {"reset", "get_reward"} <= {name for name, _ in members}
    assert environment_factory(KEYDOOR).__name__ == "KeyDoor_s2k0d1_v0"


def test_tool_methods_follow_the_declared_schemas_and_step_the_env():
    env = environment_factory(COUNTER, render_mode="ansi")()
    assert str(inspect.signature(env.add)) == "(amount: int, unit: Literal['ones', 'tens'] = None) -> str"
    assert env.reset(seed=2) == "Reach 5."
    assert env.add(2) == "count=2"
    assert env.add(amount=3, unit="ones") == "count=5"
    assert '> add({"amount": 3, "unit": "ones"})' in env.env.render()
    assert env.submit(tags=["x"]) == "submitted 5 ['x']\n\nThe episode is over: the task is solved."
    assert env.get_reward() == 1.0 and env.turns == 3
    with pytest.raises(TypeError, match="multiple values"):
        env.add(1, amount=2)


def test_tool_names_that_cannot_be_methods_are_refused():
    def spec(name):
        tools = ({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}},)
        return EnvSpec(id="Bad-v0", entry_point=type("Bad", (CounterEnv,), {"tools": tools}))

    for name in ["reset", "get_reward", "bad-name", "_private", "class"]:
        with pytest.raises(ConfigError, match="tool"):
            environment_factory(spec(name))


def test_transformers_schema_extraction_accepts_the_methods():
    """What TRL does with the methods: transformers' get_json_schema, then the chat template's tools section."""
    pytest.importorskip("trl")
    from transformers.utils import get_json_schema

    from agentenv.models import tiny_model

    act = get_json_schema(environment_factory(KEYDOOR)().act)["function"]
    assert act["name"] == "act" and "one text command" in act["description"]
    assert act["parameters"]["required"] == ["command"]
    assert act["parameters"]["properties"]["command"]["type"] == "string"
    counter = environment_factory(COUNTER)()
    add, submit = get_json_schema(counter.add)["function"], get_json_schema(counter.submit)["function"]
    assert add["description"] == "Add to the counter."
    assert add["parameters"] == CounterEnv.tools[0]["function"]["parameters"] | {
        "properties": {
            "amount": {"type": "integer", "description": "How much to add."},
            "unit": {"type": "string", "enum": ["ones", "tens"], "description": "The scale."},
        }
    }
    assert submit["parameters"] == {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "description": "The tags."}},
    }
    _, tokenizer = tiny_model()
    ensure_tool_template(tokenizer)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tools=[counter.add, counter.submit], tokenize=False
    )
    assert '"name": "add"' in text and '"name": "submit"' in text


def test_trl_dataset_rows():
    pytest.importorskip("datasets")
    dataset = trl_dataset(KEYDOOR, split="test", n=3, start=10)
    assert dataset.column_names == ["prompt", "seed", "task_id"] and len(dataset) == 3
    row = dataset[2]
    instructions = agentenv.make(KEYDOOR).unwrapped.instructions
    assert row["prompt"] == [{"role": "system", "content": instructions}, {"role": "user", "content": ""}]
    assert (row["seed"], row["task_id"]) == (12, "keydoor-s2k0d1-2000000012")
    assert trl_dataset(KEYDOOR, n=3, pool_size=2)["task_id"][2] == "keydoor-s2k0d1-0"


def test_ensure_tool_template():
    pytest.importorskip("trl")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template, supports_tool_calling

    from agentenv.models import tiny_model

    _, tokenizer = tiny_model()
    assert not supports_tool_calling(tokenizer)  # plain ChatML, like SmolLM2's
    assert ensure_tool_template(tokenizer) is tokenizer and tokenizer.chat_template == qwen2_5_chat_template
    assert ensure_tool_template(tokenizer).chat_template == qwen2_5_chat_template
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"a": 0, "?": 1}, unk_token="?")))
    plain.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ConfigError, match="ChatML"):
        ensure_tool_template(plain)


# ---- SFT demonstrations in TRL's layout -------------------------------------------------------------------
class PlannedCounterEnv(CounterEnv):
    """The counter probe with a walkthrough: tool-call texts, as tool-using envs write their plans."""

    def walkthrough(self):
        return [tool_call_text("add", {"amount": self.target - self.count}), tool_call_text("submit", {"tags": ["a"]})]


def test_walkthrough_chats_are_the_walkthroughs_played_through_the_class():
    chats = walkthrough_chats(KEYDOOR, split="validation", n=2, start=3)
    assert len(chats) == 2
    Env = environment_factory(KEYDOOR, split="validation")
    env, chat = Env(), chats[1]
    system = {"role": "system", "content": env.env.unwrapped.instructions}
    assert chat[:2] == [
        system,
        {"role": "user", "content": env.reset(seed=4, prompt=[system, {"role": "user", "content": ""}])},
    ]
    calls, results = chat[2:-1:2], chat[3:-1:2]
    assert [c["tool_calls"][0]["function"]["arguments"]["command"] for c in calls] == env.env.unwrapped.walkthrough()
    for call, result in zip(calls, results, strict=True):
        function = call["tool_calls"][0]["function"]
        assert call["role"] == "assistant" and function["name"] == "act"
        assert result == {"role": "tool", "name": "act", "content": env.act(**function["arguments"])}
    assert env.success and results[-1]["content"].endswith("the task is solved.")
    assert chat[-1] == {"role": "assistant", "content": FINAL_ANSWER}
    planned = walkthrough_chats(EnvSpec(id="Planned-v0", entry_point=PlannedCounterEnv), n=1, start=2)[0]
    assert [m["tool_calls"][0]["function"] for m in planned[2:-1:2]] == [
        {"name": "add", "arguments": {"amount": 5}},
        {"name": "submit", "arguments": {"tags": ["a"]}},
    ]
    assert planned[-2]["content"].endswith("the task is solved.")
    with pytest.raises(ConfigError, match="walkthrough"):
        walkthrough_chats(COUNTER, n=1)


def test_tool_call_chat_format_builds_the_ids_grpo_trainer_builds():
    """The SFT rows have TRL's layout: its prompt ids, turns its parser reads back as the calls, and between turns
    the tool-result ids its tool loop appends (TRL's own ``_get_tool_suffix_ids``)."""
    pytest.importorskip("trl")
    from types import SimpleNamespace

    from trl import GRPOTrainer
    from trl.chat_template_utils import add_response_schema, parse_response

    from agentenv.models import tiny_model

    _, tokenizer = tiny_model()
    add_response_schema(ensure_tool_template(tokenizer))
    Env = environment_factory(KEYDOOR)
    env = Env()
    chat = walkthrough_chats(KEYDOOR, n=1)[0]
    ids, mask, spans = ToolCallChatFormat(tokenizer, Env).encode_chat(chat)
    prompt = tokenizer.apply_chat_template(
        [chat[:2]], tools=[env.act], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"][0]
    assert ids[: spans[0][0]] == prompt and len(spans) == (len(chat) - 1) // 2  # calls + the final answer
    trl = SimpleNamespace(processing_class=tokenizer, chat_template=None, chat_template_kwargs={}, _is_vlm=False,
                          _tokenizer=tokenizer)  # fmt: skip
    for k, (start, end) in enumerate(spans):
        assert ids[end - 1] == tokenizer.eos_token_id and mask[start:end] == [1] * (end - start)
        parsed = parse_response(tokenizer, ids[start:end], prefix=ids[:start], tools=[env.act])
        message = chat[2 + 2 * k]
        assert parsed.get("tool_calls", []) == message.get("tool_calls", [])
        if k + 1 < len(spans):
            suffix = GRPOTrainer._get_tool_suffix_ids(trl, [chat[3 + 2 * k]])
            assert ids[end : spans[k + 1][0]] == suffix and not any(mask[end : spans[k + 1][0]])
    assert parsed["content"] == FINAL_ANSWER


# ---- a real GRPOTrainer run --------------------------------------------------------------------------------
def scripted_model(tokenizer, turn: str):
    """A Qwen2 model that answers every prompt with ``turn`` (one added token) then ``<|im_end|>``.

    Attention and MLP outputs are zero, so the logits depend on the last token only: ``turn`` after any token,
    the end of turn after ``turn``. A random tiny model never writes a parsable tool call; this one always does.
    """
    import torch
    import transformers

    tokenizer.add_tokens([turn])
    turn_id, eos = tokenizer.convert_tokens_to_ids(turn), tokenizer.eos_token_id
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        head.zero_()
        embed[:, 0] = 1.0
        embed[turn_id] = 0.0
        embed[turn_id, 1] = 1.0
        head[turn_id, 0] = head[eos, 1] = 4.0  # after RMS norm: a logit margin of 32
    return model


@pytest.mark.slow
@pytest.mark.parametrize("with_dataset", [True, False])
def test_grpo_trainer_plays_the_env_through_tool_calls(tmp_path, with_dataset):
    """GRPOTrainer with our class (and dataset, or TRL's empty prompts): the model's tool calls play the walkthrough
    of task 0, get_reward scores it."""
    pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    from agentenv.models import tiny_model

    reference = agentenv.make(KEYDOOR)
    reference.reset(seed=0)
    walkthrough = reference.unwrapped.walkthrough()
    calls = [json.dumps({"name": "act", "arguments": {"command": c}}) for c in walkthrough]
    turn = "\n".join(f"<tool_call>\n{call}\n</tool_call>" for call in calls)
    _, tokenizer = tiny_model()
    ensure_tool_template(tokenizer)
    model = scripted_model(tokenizer, turn)
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_steps=1,
        max_completion_length=768, max_tool_calling_iterations=1, activation_checkpointing=False, bf16=False,
        use_cpu=True, logging_steps=1, report_to=[], save_strategy="no",
    )  # fmt: skip
    Env = environment_factory(KEYDOOR, group_size=args.num_generations)
    trainer = GRPOTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=trl_dataset(KEYDOOR, n=1) if with_dataset else None,
        environment_factory=Env,
    )
    trainer.train()
    logs = trainer.state.log_history[0]
    assert logs[f"rewards/{Env.__name__}/mean"] == 1.0 and logs["reward"] == 1.0
    assert logs["tools/call_frequency"] == len(walkthrough) and logs["tools/failure_frequency"] == 0.0
    assert len(trainer.environments) == 2
    for env in trainer.environments:
        assert type(env) is Env and env.success and env.turns == len(walkthrough)
        assert env.task_id == "keydoor-s2k0d1-0"


@pytest.mark.slow
def test_the_trl_example_runs_sft_then_grpo(tmp_path):
    """examples/trl_grpo.py end to end on the tiny model: SFT on two walkthroughs, one GRPO step, its summary."""
    pytest.importorskip("trl")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "trl_grpo.py"
    spec = importlib.util.spec_from_file_location("trl_grpo_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "summary.json"
    argv = ["--model", "tiny", "--sft-tasks", "2", "--steps", "1", "--generations", "2", "--tasks-per-step", "1",
            "--train-tasks", "2", "--eval-tasks", "2"]  # fmt: skip
    summary = example.main([*argv, "--max-completion-length", "48", "--output-dir", str(tmp_path), "--json", str(out)])
    assert summary["steps"] == 1 and summary["sft_steps"] == 1 and summary["episodes_per_step"] == 2
    assert summary["steps_per_pass"] == 2 and summary["first_pass_reward"] == summary["last_pass_reward"]  # 1 step
    record = json.loads(out.read_text())
    assert record["summary"] == summary and len(record["steps"]) == 1 and 0.0 <= record["steps"][0]["reward"] <= 1.0
    for key in ("held_out_after_sft", "held_out_after_grpo"):  # the same 2 test tasks, greedy, before and after
        assert summary[key]["episodes"] == 2 and 0.0 <= summary[key]["success_rate"] <= 1.0


# ---- playing TRL's layout with our rollout engine ---------------------------------------------------------------


def test_tool_loop_plays_act_calls_and_ends_on_a_turn_without_one():
    from agentenv.spaces import ToolCall

    env = ToolLoop(agentenv.make(KEYDOOR, split="test"))
    env.reset(seed=3)
    for command in env.unwrapped.walkthrough():
        _, reward, terminated, _, info = env.step([ToolCall("act", {"command": command})])
    assert terminated and info["success"] and reward > 0
    env.reset(seed=3)
    _, reward, terminated, truncated, info = env.step("I think the coin is north.")  # an answer, no call
    assert terminated and not truncated and reward == 0.0 and not info["success"] and info["no_tool_call"]
    env.reset(seed=3)
    _, _, terminated, _, info = env.step(ToolCall("act", {"command": "dance wildly"}))
    assert not terminated and info["invalid_action"]  # a bad command is the env's invalid turn, the episode goes on


def test_tool_loop_passes_a_tool_envs_own_calls():
    from agentenv.spaces import ToolCall

    env = ToolLoop(CounterEnv())
    env.reset(seed=0)  # target 3
    env.step(ToolCall("add", {"amount": 3}))
    _, reward, terminated, _, info = env.step(ToolCall("submit", {}))
    assert terminated and reward == 1.0 and info["success"]


def test_evaluate_tool_loop_plays_every_task_in_trls_layout():
    from agentenv.models import tiny_model

    model, tokenizer = tiny_model(seed=0)
    model.train()
    result = evaluate_tool_loop(model, ensure_tool_template(tokenizer), KEYDOOR, range(3), max_new_tokens=8)
    # the untrained tiny model writes no tool call: each task ends after its first turn, unsolved
    assert result["episodes"] == 3 and result["solved"] == 0 and result["success_rate"] == 0.0
    assert result["mean_turns"] == 1.0 and model.training  # played in eval mode, given back in train mode
