"""The policy contract (agentenv.policy): every runner plays play_episode, model runners are token policies, and one
parser names every backend for eval and judge-audit alike."""

import importlib.util

import pytest

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies import (
    OpenAIPolicy,
    RandomPolicy,
    Sampling,
    TransformersPolicy,
    WalkthroughPolicy,
    build_policy,
)
from agentenv.policies.vllm import VLLMPolicy
from agentenv.policy import Backend, EpisodePolicy, TokenPolicy, parse_backend
from agentenv.rewards.antihack import resolve_judge
from agentenv.rollout import play_episode, rollout

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def keydoor():
    return agentenv.make("AgentEnv/KeyDoor-s2k0d1-v0", max_turns=3)


def test_sampling_and_generation_keep_their_old_home():
    from agentenv.policies import local
    from agentenv.policy import Generation

    assert local.Sampling is Sampling and local.Generation is Generation


def test_every_runner_plays_episodes_and_model_runners_are_token_policies(tiny):
    model, tokenizer = tiny
    scripted = [RandomPolicy(seed=0), WalkthroughPolicy()]
    models = [TransformersPolicy(model, tokenizer), OpenAIPolicy("http://127.0.0.1:9/v1", "served")]
    assert all(isinstance(p, EpisodePolicy) and not isinstance(p, TokenPolicy) for p in scripted)
    assert all(isinstance(p, TokenPolicy) for p in models)
    assert all(callable(getattr(VLLMPolicy, m, None)) for m in ("start", "act", "generate"))  # needs a GPU to build


def test_play_episode_with_a_transformers_policy_generates_what_the_rollout_does(tiny):
    model, tokenizer = tiny
    runner = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=8, temperature=0.0), prefix_cache=False)
    episode = play_episode(keydoor(), runner, seed=2)
    [trajectory] = rollout([keydoor()], runner, ChatFormat(tokenizer), [2])
    assert [t.action for t in episode.turns] == [t.action for t in trajectory.turns]
    assert len(episode.turns) == 3 and episode.policy == "model"


@pytest.mark.parametrize(
    "spec, backend",
    [
        ("random", Backend("random")),
        ("walkthrough", Backend("walkthrough")),
        ("model:tiny", Backend("model", "tiny")),
        ("model:org/name", Backend("model", "org/name")),
        ("openai:http://127.0.0.1:8080/v1", Backend("openai", "http://127.0.0.1:8080/v1", "default")),
        ("openai:https://host/v1#Qwen/Qwen3-0.6B", Backend("openai", "https://host/v1", "Qwen/Qwen3-0.6B")),
    ],
)
def test_parse_backend_reads_every_spelling(spec, backend):
    assert parse_backend(spec) == backend


def test_parse_backend_resolves_a_model_folder(tmp_path):
    assert parse_backend(f"model:{tmp_path}") == Backend("model", str(tmp_path))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("walkthru", "policy='walkthru' is not allowed; choose one of random, walkthrough, model:NAME|PATH, "
                     "openai:URL[#MODEL], vllm:PATH. Did you mean 'walkthrough'?"),
        ("model:", "needs a model folder or hub id after the colon"),
        ("model:./no/such/folder", "no model folder at './no/such/folder'"),
        ("openai:localhost:8000", "expected openai:http(s)://HOST[:PORT]/v1[#MODEL]"),
        ("agentenv.rewards.judges:PointwiseJudge", "is not allowed"),
    ],
)  # fmt: skip
def test_parse_backend_explains_a_bad_spec(spec, message):
    with pytest.raises(ConfigError) as caught:
        parse_backend(spec)
    assert message in str(caught.value)


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_vllm_without_vllm_names_the_gpu_extra_for_policies_and_judges():
    for build in (build_policy, resolve_judge):
        with pytest.raises(ConfigError, match=r"needs vllm.*pip install 'agentenv\[gpu\]'"):
            build("vllm:org/model")


def test_build_policy_makes_each_backend_named_by_its_spec():
    assert isinstance(build_policy("walkthrough"), WalkthroughPolicy)
    runner = build_policy("model:tiny", sampling=Sampling(max_new_tokens=4), batch_size=3)
    assert isinstance(runner, TransformersPolicy) and (runner.name, runner.batch_size) == ("model:tiny", 3)
    served = build_policy("openai:http://127.0.0.1:9/v1#tiny", batch_size=2)
    assert isinstance(served, OpenAIPolicy) and served.tokenizer is not None and served.name.endswith("#tiny")
    hosted = build_policy("openai:http://127.0.0.1:9/v1#some-hosted-model")  # no tokenizer: chat mode
    assert hosted.tokenizer is None and hosted.model == "some-hosted-model"


def test_judges_take_the_same_backend_names():
    judge = resolve_judge("openai:http://127.0.0.1:9/v1#judge")
    assert (judge.backend.http.base_url, judge.backend.model) == ("http://127.0.0.1:9/v1", "judge")
    with pytest.raises(ConfigError, match="judge='openai:localhost:8000'"):
        resolve_judge("openai:localhost:8000")
