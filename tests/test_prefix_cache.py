"""KV prefix reuse in TransformersPolicy: the same generations as without it, and never stale after a weight update."""

import math

import pytest
import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.models import tiny_model
from agentenv.policies import Sampling, TransformersPolicy
from agentenv.rollout import rollout

GREEDY = Sampling(max_new_tokens=10, temperature=0.0)
SAMPLED = Sampling(max_new_tokens=10, temperature=0.9, top_p=0.8, seed=7)
SYSTEM = "You are in a small kitchen. There is a closed door to the north and a key on the table. What do you do next?"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: with two, a busy 2-core machine makes every op wait on the other thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny():
    """The tiny model, made less degenerate (as built it repeats the last prompt token): layers that outweigh the
    embeddings and peaked logits, so greedy turns vary and argmax ties are far. Per test: some change the weights."""
    model, tokenizer = tiny_model(seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if ".layers." in name and weight.dim() == 2:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.2)
        model.model.norm.weight.mul_(10)
    return model, tokenizer


def chat(fmt, *texts):
    return fmt.start([{"role": "system", "content": SYSTEM}] + [{"role": "user", "content": t} for t in texts])


def turn(fmt, prompt, generation, text):
    """The next prompt of an episode: what the model saw, what it generated, then the env's answer."""
    delta = fmt.delta({"role": "user", "content": text}, ended=fmt.ended(generation.token_ids))
    return prompt + generation.token_ids + delta


def assert_same(got, want, atol=1e-4):
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [(g.finish_reason, g.text) for g in got] == [(w.finish_reason, w.text) for w in want]
    for g, w in zip(got, want, strict=True):
        assert len(g.logprobs) == len(g.token_ids)
        assert all(math.isclose(a, b, abs_tol=atol) for a, b in zip(g.logprobs, w.logprobs, strict=True))


def pair(model, tokenizer, sampling, **kwargs):
    return (
        TransformersPolicy(model, tokenizer, sampling, **kwargs),
        TransformersPolicy(model, tokenizer, sampling, prefix_cache=False, **kwargs),
    )


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("batch_size", [8, 2])
def test_multi_turn_calls_with_mixed_rows_match_generation_without_the_cache(tiny, sampling, batch_size):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    cached, plain = pair(model, tokenizer, sampling, batch_size=batch_size)
    a, b, c = chat(fmt, "hi"), chat(fmt, "go north now please, then open the door with the key"), chat(fmt, "look")
    probe = plain.generate([a, b, c])
    others = set(probe[0].token_ids + probe[2].token_ids)
    ids = probe[1].token_ids
    stop = next(k for k in range(1, len(ids) - 2) if ids[k] not in others and ids[k] not in ids[:k])
    cached.stop_ids = plain.stop_ids = [tokenizer.eos_token_id, ids[stop]]  # one row's turn ends early

    def call(prompts):
        got, want = cached.generate(prompts), plain.generate(prompts)
        assert_same(got, want)
        return got

    ga, gb, gc = call([a, b, c])
    assert [g.finish_reason for g in (ga, gb, gc)] == ["length", "stop", "length"] and len(gb.token_ids) == stop + 1
    first = cached.stats["reused_tokens"]  # with batch_size 2, c reuses the shared system prompt of a and b
    a2, b2, d = turn(fmt, a, ga, "You see a door."), turn(fmt, b, gb, "Nothing happens. " * 4), chat(fmt, "inventory")
    ga2, _, gd = call([a2, b2, d])  # two extended rows of different lengths, one new
    extended = len(a) + len(ga.token_ids) - 1 + len(b) + len(gb.token_ids) - 1  # all but each turn's last token
    assert extended <= cached.stats["reused_tokens"] - first < extended + len(d)  # d: at most the system prompt
    assert cached.cache_info()["entries"] == 3  # c's entry is gone: this call did not extend it
    e = b2[:-6] + fmt.encode("take the key")  # shares part of an earlier prompt, then diverges
    rows = [turn(fmt, a2, ga2, "The door is locked."), turn(fmt, d, gd, "You carry nothing."), c, e]
    ga3, _, _, ge = call(rows)  # c comes back without its entry; e reuses part of b2's
    call([turn(fmt, rows[0], ga3, "ok"), turn(fmt, e, ge, "You take the key.")])
    assert cached.cache_info()["entries"] == 2


def test_rows_sharing_a_prefix_prefill_it_once(tiny):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    cached, plain = pair(model, tokenizer, SAMPLED)
    prompts = [chat(fmt, "hi")] * 4 + [chat(fmt, "look"), chat(fmt, "go north")]  # e.g. a GRPO group
    assert_same(cached.generate(prompts), plain.generate(prompts))
    assert cached.stats["shared_tokens"] >= 3 * (len(prompts[0]) - 1) and cached.stats["reused_tokens"] == 0


def test_eager_attention_gets_an_additive_mask(tiny):
    model, tokenizer = tiny
    model.set_attn_implementation("eager")
    fmt = ChatFormat(tokenizer)
    cached, plain = pair(model, tokenizer, GREEDY)
    prompts = [chat(fmt, "hi"), chat(fmt, "go north now please, then open the door with the key")]
    for _ in range(2):
        got = cached.generate(prompts)
        assert_same(got, plain.generate(prompts))
        prompts = [turn(fmt, p, g, "You see a door.") for p, g in zip(prompts, got, strict=True)]
    assert cached.reuse_supported() and cached.stats["reused_tokens"] > 0


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(tiny):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    prompts = [chat(fmt, "hi"), chat(fmt, "look at the key")]

    def episode(seed):
        policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=8, temperature=1.0, seed=seed))
        first = policy.generate(prompts)
        second = policy.generate([turn(fmt, p, g, "ok") for p, g in zip(prompts, first, strict=True)])
        return [g.token_ids for g in first + second]

    assert episode(1) == episode(1) != episode(2)


def test_short_prompts_and_single_token_turns(tiny):
    model, tokenizer = tiny
    cached, plain = pair(model, tokenizer, Sampling(max_new_tokens=1, temperature=0.0))
    prompts = [[5], [5, 6, 7], [9, 5]]
    for _ in range(3):
        got = cached.generate(prompts)
        assert_same(got, plain.generate(prompts))
        prompts = [p + g.token_ids + [11] for p, g in zip(prompts, got, strict=True)]
    assert cached.stats["reused_tokens"] > 0


def test_the_cache_is_bounded_and_can_be_turned_off(tiny):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    prompts = [chat(fmt, "hi"), chat(fmt, "look")]
    small = TransformersPolicy(model, tokenizer, GREEDY, cache_max_tokens=10)
    off = TransformersPolicy(model, tokenizer, GREEDY, prefix_cache=False)
    for policy in (small, off):
        first = policy.generate(prompts)
        policy.generate([turn(fmt, p, g, "ok") for p, g in zip(prompts, first, strict=True)])
        assert policy.cache_info() == {"entries": 0, "tokens": 0, "slots": 0}
        assert policy.stats["reused_tokens"] == 0


def update_in_place(model, how):
    weight = model.model.layers[0].mlp.up_proj.weight
    if how == "add_":
        with torch.no_grad():
            weight.add_(0.05)
    elif how == "data":  # bypasses the version counter: caught by the sampled fingerprint
        weight.data.mul_(1.5)
    elif how == "optimizer":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits.logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    elif how == "load_state_dict":
        model.load_state_dict({k: v * 1.1 for k, v in model.state_dict().items()})


@pytest.mark.parametrize("how", ["add_", "data", "optimizer", "load_state_dict", "clear_cache"])
def test_a_weight_update_never_leaves_a_stale_cache(tiny, how):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    policy = TransformersPolicy(model, tokenizer, GREEDY)
    prompts = [chat(fmt, "hi"), chat(fmt, "go north now please")]
    first = policy.generate(prompts)
    prompts = [turn(fmt, p, g, "You see a door.") for p, g in zip(prompts, first, strict=True)]
    before = TransformersPolicy(model, tokenizer, GREEDY, prefix_cache=False).generate(prompts)
    if how == "clear_cache":
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.data.mul_(1.5)
        policy.clear_cache()
    else:
        update_in_place(model, how)
    got = policy.generate(prompts)
    want = TransformersPolicy(model, tokenizer, GREEDY, prefix_cache=False).generate(prompts)
    assert [g.logprobs for g in want] != [g.logprobs for g in before]  # the update changes what the model says
    assert_same(got, want)
    assert policy.stats["reused_tokens"] == 0


def test_without_a_weight_update_the_next_turn_reuses_the_cache(tiny):
    model, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    policy = TransformersPolicy(model, tokenizer, GREEDY)
    prompts = [chat(fmt, "hi")]
    first = policy.generate(prompts)
    policy.generate([turn(fmt, prompts[0], first[0], "You see a door.")])
    assert policy.stats["reused_tokens"] == len(prompts[0]) + len(first[0].token_ids) - 1


@pytest.mark.slow
def test_default_model_rollout_on_textworld_is_the_same_with_the_cache():
    from agentenv.models import load_model

    model, tokenizer = load_model("default")
    env_id = "AgentEnv/TextWorld-w1o1q1-v0"
    sampling = Sampling(max_new_tokens=8, temperature=0.0)
    runs, policies = [], pair(model, tokenizer, sampling)
    for policy in policies:
        envs = [agentenv.make(env_id, split="validation", max_turns=3) for _ in range(2)]
        runs.append(rollout(envs, policy, ChatFormat(tokenizer), range(3), env_id=env_id))  # the 3rd joins midway
        for env in envs:
            env.close()
    cached, plain = runs
    assert not any(t.error for t in cached + plain)
    assert policies[0].stats["reused_tokens"] > 0.5 * policies[0].stats["prompt_tokens"]
    assert [t.token_ids for t in cached] == [t.token_ids for t in plain]
    for c, p in zip(cached, plain, strict=True):
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(c.logprobs, p.logprobs, strict=True))
