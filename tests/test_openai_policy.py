"""The OpenAI-compatible policy against a real HTTP server on loopback that answers in vLLM's or llama.cpp's form."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.cli import app
from agentenv.errors import ConfigError
from agentenv.models import load_tokenizer, tiny_model
from agentenv.policies.local import Sampling
from agentenv.policies.openai_compat import OpenAIPolicy
from agentenv.rollout import play_episode, rollout
from tests.canned_server import CompletionServer, logprob, serving

EOS = 2


@pytest.fixture
def server():
    """A server answering completions in vLLM's form."""
    with serving(CompletionServer("vllm")) as srv:
        yield srv


@pytest.fixture(params=["vllm", "llama.cpp"])
def any_server(request):
    """A server answering completions in vLLM's form, then one in llama.cpp's."""
    with serving(CompletionServer(request.param)) as srv:
        yield srv


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def policy(server, **kw) -> OpenAIPolicy:
    kw.setdefault("stop_token_ids", [EOS])
    return OpenAIPolicy(server.url, "served", api_key="sk-test", retries=2, backoff=0.01, **kw)


def test_token_mode_sends_token_ids_and_reads_ids_logprobs_and_finish_reasons(any_server):
    server = any_server
    server.completion = lambda p: ([7, 8, EOS], "hi", "stop") if p[-1] == 1 else ([9] * 4, "zzzz", "length")
    sampling = Sampling(max_new_tokens=4, temperature=0.7, top_p=0.9, seed=5)
    stopped, cut = policy(server).generate([[10, 11, 1], [12, 3]], sampling)
    assert (stopped.token_ids, stopped.finish_reason, stopped.text) == ([7, 8, EOS], "stop", "hi")
    assert stopped.logprobs == [logprob(0), logprob(1), logprob(2)]
    assert (cut.token_ids, cut.finish_reason, len(cut.logprobs)) == ([9] * 4, "length", 4)
    first, second = sorted(server.requests, key=lambda r: r["seed"])
    assert (first["prompt"], second["prompt"]) == ([10, 11, 1], [12, 3])  # token ids, not text
    assert first["stop_token_ids"] == [EOS] and first["return_tokens_as_token_ids"] is True
    assert first["logprobs"] == 1 and first["model"] == "served"
    assert (first["max_tokens"], first["temperature"], first["top_p"]) == (4, 0.7, 0.9)
    assert (first["seed"], second["seed"]) == (5, 6)  # equal prompts in a batch still get different samples


def test_the_stop_tokens_default_to_the_tokenizers_eos(server, tiny):
    _, tokenizer = tiny
    OpenAIPolicy(server.url, "served", tokenizer=tokenizer).generate([[1]])
    assert server.requests[0]["stop_token_ids"] == [tokenizer.eos_token_id]


def test_requests_are_retried_after_500_and_429(server):
    server.failures = [500, 429]
    [generation] = policy(server).generate([[1, 2]])
    assert generation.finish_reason == "stop" and generation.token_ids == [7, 8, EOS]
    assert len(server.requests) == 3


def test_a_request_that_keeps_failing_is_an_error_for_its_prompt_only(server):
    server.fail_if = lambda body: body["prompt"] == [66]
    good, bad, other = policy(server).generate([[1], [66], [2]])
    assert [good.finish_reason, bad.finish_reason, other.finish_reason] == ["stop", "error", "stop"]
    assert "HTTP 500" in bad.error and "3 attempts" in bad.error and bad.token_ids == []
    assert good.token_ids == other.token_ids == [7, 8, EOS]
    assert server.prompts().count([66]) == 3


def test_an_unreachable_server_gives_errors_not_exceptions():
    lost = OpenAIPolicy("http://127.0.0.1:9/v1", "served", retries=1, backoff=0.01, timeout=2)
    generations = lost.generate([[1], [2]])
    assert [g.finish_reason for g in generations] == ["error", "error"]
    assert all("ConnectError" in g.error for g in generations)


def test_at_most_concurrency_requests_are_in_flight(server):
    server.delay = 0.05
    generations = policy(server, concurrency=3).generate([[k] for k in range(10)])
    assert all(g.finish_reason == "stop" for g in generations)
    assert len(server.requests) == 10 and server.peak == 3


def test_a_server_without_token_ids_is_a_clear_configuration_error(server):
    server.form = "text"
    with pytest.raises(ConfigError, match="vLLM/SGLang-compatible server"):
        policy(server).generate([[1], [2]])


def test_retokenizing_is_opt_in_and_not_token_exact(server, tiny):
    _, tokenizer = tiny
    with pytest.raises(ConfigError, match="tokenizer"):
        OpenAIPolicy(server.url, "served", allow_retokenize=True)
    server.form = "text"
    server.completion = lambda p: ([5, 6], "look", "stop")
    hosted = OpenAIPolicy(server.url, "served", tokenizer=tokenizer, allow_retokenize=True)
    with pytest.warns(UserWarning, match="not token-exact"):
        [generation] = hosted.generate([[1]])
    look = tokenizer("look", add_special_tokens=False)["input_ids"]
    assert generation.token_ids == [*look, tokenizer.eos_token_id] and generation.logprobs == []


def test_sync_generate_inside_a_running_event_loop(server):
    async def main():
        return policy(server).generate([[1]])

    assert asyncio.run(main())[0].token_ids == [7, 8, EOS]


def test_chat_mode_returns_texts(server):
    conversations = [[{"role": "user", "content": "hello"}], [{"role": "user", "content": "look"}]]
    assert [g.text for g in policy(server).chat(conversations)] == ["reply to hello", "reply to look"]
    assert {r["messages"][-1]["content"] for r in server.requests} == {"hello", "look"}
    assert not any("stop_token_ids" in r or "prompt" in r for r in server.requests)  # no vLLM extras for hosted APIs
    server.fail_if = lambda body: body["messages"][-1]["content"] == "look"
    replies = policy(server).chat(conversations)
    assert replies[0].text == "reply to hello" and replies[1].finish_reason == "error"


def test_api_key_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert OpenAIPolicy(server.url, "served").http.api_key == "sk-from-env"
    assert "sk-" not in repr(OpenAIPolicy(server.url, "served"))


# ---- inside the rollout engine ----------------------------------------------------------------------------------


def keydoors(n):
    return [agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=3) for _ in range(n)]


def say_look(server, tokenizer):
    look = [*tokenizer("look", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    server.completion = lambda prompt: (look, "look", "stop")
    return look


def test_rollout_with_the_http_policy_is_token_exact(any_server, tiny):
    server = any_server
    _, tokenizer = tiny
    look = say_look(server, tokenizer)
    http = OpenAIPolicy(server.url, "served", tokenizer=tokenizer, retries=1, backoff=0.01)
    trajectories = rollout(keydoors(2), http, ChatFormat(tokenizer), [0, 1], record_prompts=True)
    for trajectory in trajectories:
        assert not trajectory.error and [t.action for t in trajectory.turns] == ["look"] * 3
        assert [trajectory.token_ids[a:b] for a, b in trajectory.turn_spans] == [look] * 3
        agent = {i for a, b in trajectory.turn_spans for i in range(a, b)}
        assert trajectory.loss_mask == [int(i in agent) for i in range(len(trajectory.token_ids))]
        assert [trajectory.logprobs[a:b] for a, b in trajectory.turn_spans] == [
            [logprob(k) for k in range(len(look))]
        ] * 3
        for prompt, (start, _) in zip(trajectory.prompts, trajectory.turn_spans, strict=True):
            assert trajectory.token_ids[:start] == prompt and prompt in server.prompts()  # what the server saw
    assert len(server.requests) == 6 and server.requests[0]["stop_token_ids"] == [tokenizer.eos_token_id]


def test_a_request_that_keeps_failing_ends_only_its_episode(server, tiny):
    _, tokenizer = tiny
    say_look(server, tokenizer)
    fmt = ChatFormat(tokenizer)
    [env] = keydoors(1)
    observation, info = env.reset(seed=1)
    doomed = fmt.start([{"role": "system", "content": info["instructions"]}, {"role": "user", "content": observation}])
    server.fail_if = lambda body: body["prompt"][: len(doomed)] == doomed and len(body["prompt"]) > len(doomed)
    http = OpenAIPolicy(server.url, "served", tokenizer=tokenizer, retries=1, backoff=0.01)
    fine, failed = rollout(keydoors(2), http, fmt, [0, 1])
    assert not fine.error and len(fine.turns) == 3 and fine.truncated
    assert "HTTP 500" in failed.error and len(failed.turns) == 1  # its second turn's request failed twice
    assert failed.turn_spans and failed.loss_mask.count(1) == len(failed.token_ids[slice(*failed.turn_spans[0])])


# ---- played turn by turn, and from the command line ---------------------------------------------------------------


def test_play_episode_plays_a_server_in_token_mode_as_the_rollout_does(any_server, tiny):
    server = any_server
    _, tokenizer = tiny
    say_look(server, tokenizer)
    [env] = keydoors(1)
    http = OpenAIPolicy(server.url, "served", tokenizer=tokenizer, retries=1, backoff=0.01)
    episode = play_episode(env, http, seed=1)
    played = server.prompts()
    [trajectory] = rollout(keydoors(1), http, ChatFormat(tokenizer), [1], record_prompts=True)
    assert [t.action for t in episode.turns] == ["look"] * 3 and episode.policy == http.name
    assert played == trajectory.prompts  # the same token-id prompts, turn by turn


def test_play_episode_without_a_tokenizer_plays_a_server_in_chat_mode(server):
    [env] = keydoors(1)
    episode = play_episode(env, policy(server), seed=0)
    assert len(episode.turns) == 3 and episode.turns[0].action.startswith("reply to ")
    assert not server.prompts() and len(server.requests) == 3  # chat completions only
    last = server.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"] == episode.turns[0].action and last[3]["content"] == episode.turns[0].observation


def eval_cli(*args):
    return CliRunner().invoke(app, ["eval", "AgentEnv/KeyDoor-s2k0d1-v0", "--episodes", "2", "-k", "max_turns=3",
                                    *args], env={"COLUMNS": "200"})  # fmt: skip


def test_eval_plays_a_served_model_in_token_mode(any_server, tmp_path):
    server = any_server
    say_look(server, load_tokenizer("tiny"))
    out = tmp_path / "episodes.jsonl"
    result = eval_cli("--policy", f"openai:{server.url}#tiny", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "success rate" in result.output and "wrote 2 trajectories" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["policy"] == f"openai:{server.url}#tiny" and r["token_ids"] for r in records)
    assert [t["action"] for t in records[0]["turns"]] == ["look"] * 3
    assert len(server.prompts()) == 6 and server.requests[0]["model"] == "tiny"


@pytest.mark.slow
def test_eval_names_a_server_by_its_url_alone(server):
    """``openai:URL`` asks for the model ``default``, whose tokenizer is the offline default's (converted on first
    use, ~20 s): what a llama.cpp server of the default GGUF file serves."""
    say_look(server, load_tokenizer("default"))
    result = eval_cli("--policy", f"openai:{server.url}")
    assert result.exit_code == 0, result.output
    assert "success rate" in result.output and len(server.prompts()) == 6
    assert server.requests[0]["model"] == "default"


def test_eval_plays_a_hosted_model_without_a_tokenizer_in_chat_mode(server):
    result = eval_cli("--policy", f"openai:{server.url}#hosted-model")
    assert result.exit_code == 0, result.output
    assert "chat mode" in result.output and "success rate" in result.output
    assert not server.prompts() and len(server.requests) == 6
