"""Trainers on real trajectories of real envs with a real (tiny) transformer: masks, gradients, updates, resume."""

from pathlib import Path

import pytest
import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError
from agentenv.models import tiny_model
from agentenv.policies import Sampling, TransformersPolicy, WalkthroughPolicy
from agentenv.policies.loss import agent_forward, policy_loss
from agentenv.policies.rl import ALGORITHMS, RLConfig, RLTrainer, collate, train_sft
from agentenv.rollout import play_episode, rollout

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"
ROOT = Path(__file__).resolve().parents[1]


def make_envs(n=4, **kwargs):
    return [agentenv.make(ENV, max_turns=3, reward="dense", **kwargs) for _ in range(n)]


@pytest.fixture
def tiny():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def played():
    """Real sampled trajectories of the tiny model on Key-Door (dense rewards), with their token layout."""
    model, tokenizer = tiny_model(seed=0)
    policy = TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=6, temperature=1.0, seed=3))
    trajectories = rollout(make_envs(), policy, ChatFormat(tokenizer), [0, 1, 2, 3])
    return model, tokenizer, trajectories


def test_collate_places_agent_tokens_and_rewards_at_turn_ends(played):
    _, tokenizer, trajectories = played
    batch = collate(trajectories, tokenizer.pad_token_id)
    for row, t in enumerate(trajectories):
        agent = [i for i, m in enumerate(t.loss_mask) if m]
        k = len(agent)
        assert batch.mask[row].sum() == k
        assert batch.targets[row, :k].tolist() == [t.token_ids[i] for i in agent]
        assert batch.positions[row, :k].tolist() == [i - 1 for i in agent]
        ends = {agent.index(p) for p in t.reward_positions}
        for j in range(k):
            paired = zip(t.turns, t.reward_positions, strict=True)
            expected = sum(turn.reward for turn, p in paired if agent.index(p) == j)
            assert batch.rewards[row, j].item() == pytest.approx(expected if j in ends else 0.0)
        assert batch.returns[row].item() == pytest.approx(t.episode_return)


def test_agent_forward_reads_the_logits_that_predicted_each_agent_token(played):
    model, tokenizer, trajectories = played
    batch = collate(trajectories, tokenizer.pad_token_id)
    ours = agent_forward(model, batch)["logprobs"]
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, -1)
    for row, t in enumerate(trajectories):
        agent = [i for i, m in enumerate(t.loss_mask) if m]
        expected = [full[row, i - 1, t.token_ids[i]].item() for i in agent]
        assert ours[row, : len(agent)].tolist() == pytest.approx(expected, abs=1e-4)
        # and they are the log-probs the sampler recorded (temperature 1): the ratio starts at 1
        assert ours[row, : len(agent)].tolist() == pytest.approx([t.logprobs[i] for i in agent], abs=1e-3)


def test_env_and_prompt_tokens_get_zero_gradient(played):
    model, tokenizer, trajectories = played
    batch = collate(trajectories, tokenizer.pad_token_id)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    logits = out.logits
    logits.retain_grad()
    logprobs = torch.log_softmax(logits, -1)
    picked = logprobs.gather(1, batch.positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    token_logprobs = picked.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    loss, _ = policy_loss(token_logprobs, token_logprobs.detach(), torch.ones_like(batch.mask), batch.mask, 1.0)
    loss.backward()
    per_position = logits.grad.abs().sum(-1)  # (rows, seq)
    for row, t in enumerate(trajectories):
        predicts_agent = {i - 1 for i, m in enumerate(t.loss_mask) if m}
        for pos in range(per_position.shape[1]):
            if pos in predicts_agent:
                assert per_position[row, pos] > 0, (row, pos)
            else:
                assert per_position[row, pos] == 0, (row, pos)


class LookOrBabble:
    """Even rows of each batch say "look" (a valid turn), odd rows babble (an invalid turn, penalised): episodes of
    one task differ in return, so every estimator has a signal. Tokens are the canonical ids + end of turn."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def generate(self, prompts, sampling=None):
        from agentenv.policies import Generation

        out = []
        for row, _ in enumerate(prompts):
            text = "look" if row % 2 == 0 else "xyzzy plugh"
            ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
            out.append(Generation(ids, [0.0] * len(ids), "stop", text))
        return out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_iteration_updates_the_policy_from_rewards(tiny, algorithm):
    model, tokenizer = tiny
    config = RLConfig(algorithm=algorithm, episodes=8, group_size=2, max_new_tokens=6, num_envs=4, lr=1e-3)
    envs = make_envs(invalid_action_penalty=0.5)
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=1, env_id=ENV)
    trainer.policy = LookOrBabble(tokenizer)
    look = ChatFormat(tokenizer).encode("look")[0]
    babble = ChatFormat(tokenizer).encode("xyzzy plugh")[0]
    batch = collate(trainer.collect(0), tokenizer.pad_token_id)
    with torch.no_grad():
        first = agent_forward(model, batch)["logprobs"][:, 0]
    before_look = first[batch.targets[:, 0] == look].mean()
    before_babble = first[batch.targets[:, 0] == babble].mean()

    metrics = trainer.iteration()
    assert metrics["episodes"] == 8 and metrics["agent_tokens"] > 0 and metrics["skipped_episodes"] == 0
    assert metrics["mean_return"] < 0 and metrics["invalid_rate"] == pytest.approx(0.5)
    with torch.no_grad():
        first = agent_forward(model, batch)["logprobs"][:, 0]
    # the rewarded turn became more likely, the penalised one less likely
    assert first[batch.targets[:, 0] == look].mean() > before_look
    assert first[batch.targets[:, 0] == babble].mean() < before_babble
    if algorithm == "ppo":
        assert metrics["vf_loss"] > 0 and trainer.value_head.linear.weight.abs().sum() > 0


def test_groups_share_a_task_seed(tiny):
    model, tokenizer = tiny
    config = RLConfig(algorithm="grpo", episodes=8, group_size=4, train_tasks=100)
    trainer = RLTrainer(config, model, tokenizer, make_envs(), ChatFormat(tokenizer), seed=0)
    seeds = trainer.task_seeds(0)
    assert len(seeds) == 8 and len(set(seeds[:4])) == 1 and len(set(seeds[4:])) == 1 and seeds[0] != seeds[4]
    assert trainer.task_seeds(0) == seeds and trainer.task_seeds(1) != seeds


def test_kl_to_the_reference_starts_at_zero_and_is_reported(tiny):
    model, tokenizer = tiny
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=6, num_envs=4, kl_coef=0.1,
                      kl_in="loss")  # fmt: skip
    envs = make_envs(invalid_action_penalty=0.5)
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=0)
    trainer.policy = LookOrBabble(tokenizer)
    metrics = trainer.iteration()
    assert metrics["kl_ref"] == pytest.approx(0.0, abs=1e-5)  # first rollout: policy == reference
    assert metrics["kl_loss"] == pytest.approx(0.0, abs=1e-5)
    metrics = trainer.iteration()  # the first update moved the policy away from the reference
    assert metrics["kl_ref"] != 0.0 and metrics["kl_loss"] > 0


def test_resume_from_a_checkpoint_makes_the_same_next_update(tmp_path):
    config = RLConfig(algorithm="ppo", episodes=4, group_size=1, max_new_tokens=5, num_envs=2, lr=1e-3)

    def trainer():
        model, tokenizer = tiny_model(seed=0)
        return RLTrainer(config, model, tokenizer, make_envs(2), ChatFormat(tokenizer), seed=7)

    straight = trainer()
    straight.iteration()
    straight.save(tmp_path / "ckpt")
    straight.iteration()

    resumed = trainer()  # a fresh process's view: new model, new optimiser
    resumed.load(tmp_path / "ckpt")
    assert resumed.iteration_done == 1
    resumed.iteration()
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(straight.value_head.linear.weight, resumed.value_head.linear.weight)


def test_checkpoint_is_a_loadable_model_folder(tmp_path, tiny):
    model, tokenizer = tiny
    config = RLConfig(algorithm="reinforce_pp", episodes=2, group_size=1, num_envs=2, max_new_tokens=4)
    trainer = RLTrainer(config, model, tokenizer, make_envs(2), ChatFormat(tokenizer))
    trainer.save(tmp_path / "c")
    loaded, _ = agentenv.models.load_model(str(tmp_path / "c"))
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_sft_lowers_the_loss_of_the_demonstrations(tiny):
    model, tokenizer = tiny
    env = agentenv.make(ENV)
    chats = [play_episode(env, WalkthroughPolicy(), s).messages() for s in range(4)]
    history = train_sft(model, chats, ChatFormat(tokenizer), epochs=8, batch_size=4, lr=3e-3)
    assert history[-1]["sft_loss"] < 0.7 * history[0]["sft_loss"]


def test_sft_needs_an_assistant_turn(tiny):
    _, tokenizer = tiny
    with pytest.raises(ConfigError, match="assistant"):
        ChatFormat(tokenizer).encode_chat([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])


def test_encode_chat_matches_what_a_rollout_would_have_built(tiny):
    _, tokenizer = tiny
    chat_format = ChatFormat(tokenizer)

    class Replay:  # generates the canonical ids of fixed texts, as a model that wrote them would
        def __init__(self, texts):
            self.texts = iter(texts)

        def generate(self, prompts, sampling=None):
            from agentenv.policies import Generation

            out = []
            for _ in prompts:
                ids = [*chat_format.encode(next(self.texts)), tokenizer.eos_token_id]
                out.append(Generation(ids, [0.0] * len(ids), "stop", tokenizer.decode(ids, skip_special_tokens=True)))
            return out

    env = make_envs(1)[0]
    episode = play_episode(env, WalkthroughPolicy(), 0)
    trajectory = rollout([env], Replay([t.action for t in episode.turns]), chat_format, [0])[0]
    ids, mask, spans = chat_format.encode_chat(trajectory.messages())
    assert ids == trajectory.token_ids[: len(ids)]
    assert mask == trajectory.loss_mask[: len(ids)]
    assert spans == trajectory.turn_spans


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "ppoo"}, "Did you mean 'ppo'"),
        ({"episodes": 10, "group_size": 4}, "multiple of group_size"),
        ({"algorithm": "grpo", "group_size": 1}, "groups of at least 2"),
        ({"temperature": 0}, "cannot explore"),
        ({"kl_in": "both"}, "kl_in"),
        ({"lr": -1.0}, "lr=-1.0"),
    ],
)
def test_rl_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RLConfig(**kwargs)


def lora_tiny():
    import peft

    model, tokenizer = tiny_model(seed=0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return peft.get_peft_model(model, config), tokenizer


def test_lora_trains_only_the_adapter_and_its_checkpoint_resumes(tmp_path):
    model, tokenizer = lora_tiny()
    config = RLConfig(algorithm="rloo", episodes=4, group_size=2, max_new_tokens=5, num_envs=2, lr=1e-2)
    trainer = RLTrainer(config, model, tokenizer, make_envs(2, invalid_action_penalty=0.5), ChatFormat(tokenizer))
    trainer.policy = LookOrBabble(tokenizer)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapter = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert adapter and all("lora_" in n for n in adapter)
    trainer.iteration()
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    assert any(not torch.equal(adapter[n], p) for n, p in model.named_parameters() if n in adapter)
    trainer.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()

    other, _ = lora_tiny()
    resumed = RLTrainer(config, other, tokenizer, make_envs(2, invalid_action_penalty=0.5), ChatFormat(tokenizer))
    resumed.load(tmp_path / "lora")
    for (name, a), b in zip(model.named_parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_loading_mismatched_weights_is_an_error(tmp_path, tiny):
    from agentenv.policies.rl import load_weights, write_model

    model, tokenizer = tiny
    bigger, _ = tiny_model(seed=0, num_layers=3)
    write_model(bigger, tokenizer, tmp_path)
    with pytest.raises(ConfigError, match="do not match"):
        load_weights(model, tmp_path)
    lora, _ = lora_tiny()
    with pytest.raises(ConfigError, match="no LoRA adapter"):
        load_weights(lora, tmp_path)


@pytest.fixture
def registry_guard():
    """Tests that register an estimator leave the registry as they found it."""
    from agentenv.policies import estimators

    before = dict(estimators._REGISTRY)
    yield estimators
    estimators._REGISTRY.clear()
    estimators._REGISTRY.update(before)


def test_a_new_estimator_is_one_registered_function_and_the_trainer_uses_it(tiny, registry_guard):
    from agentenv.policies.estimators import register_estimator

    calls = []

    @register_estimator("signed_return", min_group_size=2)
    def signed_return(inputs):  # +1 above the batch's mean return, -1 below, on every agent token
        calls.append(inputs.returns.clone())
        return {"advantages": torch.sign(inputs.returns - inputs.returns.mean()).unsqueeze(1) * inputs.mask}

    with pytest.raises(ConfigError, match=r"group_size=1: signed_return needs groups of at least 2"):
        RLConfig(algorithm="signed_return", episodes=4, group_size=1)
    model, tokenizer = tiny
    config = RLConfig(algorithm="signed_return", episodes=8, group_size=2, max_new_tokens=6, num_envs=4, lr=1e-3)
    trainer = RLTrainer(config, model, tokenizer, make_envs(invalid_action_penalty=0.5), ChatFormat(tokenizer),
                        seed=1, env_id=ENV)  # fmt: skip
    trainer.policy = LookOrBabble(tokenizer)
    assert trainer.value_head is None  # no critic: no value head
    look = ChatFormat(tokenizer).encode("look")[0]
    batch = collate(trainer.collect(0), tokenizer.pad_token_id)
    with torch.no_grad():
        before = agent_forward(model, batch)["logprobs"][:, 0][batch.targets[:, 0] == look].mean()
    trainer.iteration()
    assert len(calls) == 1 and len(calls[0]) == 8
    with torch.no_grad():
        after = agent_forward(model, batch)["logprobs"][:, 0][batch.targets[:, 0] == look].mean()
    assert after > before


def test_an_unknown_estimator_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match=r"algorithm='gpro' is not allowed.*'ppo'.*Did you mean 'grpo'"):
        RLConfig(algorithm="gpro")
    with pytest.raises(ConfigError, match="must be an identifier"):
        from agentenv.policies.estimators import register_estimator

        register_estimator("my estimator")


def test_recipe_validation_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from agentenv.recipes.config import load_recipe; load_recipe('recipes/cotrain-reading.yaml'); "
        "load_recipe('recipes/demo.yaml'); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


class SecondCopy(TransformersPolicy):
    """A generation runner on its own copy of the weights — the shape of a vLLM engine beside the trainer."""

    def __init__(self, model, tokenizer):
        import copy

        super().__init__(copy.deepcopy(model), tokenizer, batch_size=4)
        self.syncs = 0

    def sync_weights(self, state):
        self.model.load_state_dict(state)
        self.syncs += 1


def test_the_trainer_trains_with_a_separate_generation_policy_and_syncs_it(tiny):
    model, tokenizer = tiny
    runner = SecondCopy(model, tokenizer)
    with torch.no_grad():  # the runner starts out of date: the trainer must hand it the weights before it plays
        next(runner.model.parameters()).add_(1.0)
    # the entropy bonus moves the weights even when every episode of a group earns the same reward
    config = RLConfig(algorithm="grpo", episodes=8, group_size=2, max_new_tokens=6, num_envs=4, lr=1e-2, ent_coef=0.1)
    trainer = RLTrainer(config, model, tokenizer, make_envs(), ChatFormat(tokenizer), seed=1, env_id=ENV,
                        policy=runner)  # fmt: skip
    assert trainer.policy is runner and runner.syncs == 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        metrics = trainer.iteration()
        assert metrics["episodes"] == 8 and metrics["agent_tokens"] > 0
    assert runner.syncs == 2  # before the first rollout and after the first update (the second waits for the next)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # the trainer's model learned
    trainer.sync_policy()
    assert all(torch.equal(v, runner.model.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="sync_weights"):
        RLTrainer(config, model, tokenizer, make_envs(), ChatFormat(tokenizer), policy=LookOrBabble(tokenizer))


def test_merged_lora_weights_are_what_merge_and_unload_gives_and_leave_the_model_as_it_was():
    import copy

    from agentenv.policies.rl import merged_state_dict

    model, _ = lora_tiny()
    with torch.no_grad():  # peft starts B at zero (no delta): give the adapter something to merge
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(merged) == set(reference) and not any("lora" in k or "base_layer" in k for k in merged)
    for k, v in reference.items():
        torch.testing.assert_close(merged[k], v, rtol=0, atol=1e-6, msg=k)
    deltas = [k for k in merged if ("q_proj" in k or "v_proj" in k) and k.endswith(".weight")]
    base = model.get_base_model().state_dict()
    assert deltas and all(not torch.equal(merged[k], base[k.replace(".weight", ".base_layer.weight")]) for k in deltas)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing merged in place


def test_a_lora_model_trains_with_a_separate_generation_policy_that_gets_its_merged_weights():
    model, tokenizer = lora_tiny()
    base, _ = tiny_model(seed=0)
    runner = SecondCopy(base, tokenizer)
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=5, num_envs=2, lr=1e-2, ent_coef=0.1)
    trainer = RLTrainer(config, model, tokenizer, make_envs(2), ChatFormat(tokenizer), seed=1, env_id=ENV,
                        policy=runner)  # fmt: skip
    trainer.iteration()
    trainer.sync_policy()  # the adapter moved: the runner computes with W + its delta
    from agentenv.policies.rl import merged_state_dict

    for k, v in merged_state_dict(model).items():
        assert torch.equal(v, runner.model.state_dict()[k]), k
    assert any("q_proj" in k and not torch.equal(v, base.state_dict()[k]) for k, v in runner.model.state_dict().items())


def test_truncated_importance_weights_and_the_sampler_gap():
    from agentenv.policies.loss import tis_weights

    trainer = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    sampler = torch.tensor([[-1.0, -1.0, -2.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    weights, gap = tis_weights(trainer, sampler, mask, cap=2.0)
    # ratios exp(0) = 1, exp(-1) = 0.37, exp(2) = 7.4 -> truncated at 2; off the mask: 1
    torch.testing.assert_close(weights, torch.tensor([[1.0, torch.e**-1, 2.0, 1.0]]))
    assert gap["logprob_gap"] == pytest.approx(1.0)  # (0 + 1 + 2) / 3
    assert gap["is_ratio_max"] == pytest.approx(torch.e**2, rel=1e-5)
    assert gap["tis_truncated"] == pytest.approx(1 / 3)
    # the weights scale each token's policy-gradient term
    advantages, old = torch.ones((1, 4)), trainer.clone()
    plain, _ = policy_loss(trainer, old, advantages, mask, 3.0)
    weighted, _ = policy_loss(trainer, old, advantages, mask, 3.0, weights=weights)
    assert plain.item() == pytest.approx(-1.0) and weighted.item() == pytest.approx(-(1 + torch.e**-1 + 2) / 3)


def test_the_trainer_reports_the_sampler_gap_and_applies_tis_when_asked(tiny):
    model, tokenizer = tiny
    runner = SecondCopy(model, tokenizer)
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=6, num_envs=2, tis_cap=2.0)
    trainer = RLTrainer(config, model, tokenizer, make_envs(2), ChatFormat(tokenizer), seed=1, env_id=ENV,
                        policy=runner)  # fmt: skip
    metrics = trainer.iteration()
    # the same fp32 weights sampled the tokens: the gap is float rounding, every ratio ~1, nothing truncated
    assert metrics["logprob_gap"] < 1e-3 and metrics["tis_truncated"] == 0.0
    assert abs(metrics["is_ratio_mean"] - 1) < 1e-3
    with torch.no_grad():  # a sampler out of date (a stale engine): the gap shows it
        for p in runner.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    runner.sync_weights = lambda state: None  # it ignores the sync: the next rollout is off-policy
    metrics = trainer.iteration()
    assert metrics["logprob_gap"] > 1e-2 and metrics["is_ratio_std"] > 1e-2
    with pytest.raises(ConfigError, match="tis_cap"):
        RLConfig(tis_cap=0.5)


def test_a_generation_engine_with_sleep_mode_sleeps_through_each_update(tiny):
    model, tokenizer = tiny

    class Sleepy(SecondCopy):
        enable_sleep_mode = True

        def __init__(self, *args):
            super().__init__(*args)
            self.events = []

        def sleep(self):
            self.events.append("sleep")

        def sync_weights(self, state):
            self.events.append("sync")
            super().sync_weights(state)

    runner = Sleepy(model, tokenizer)
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=4, num_envs=2)
    trainer = RLTrainer(config, model, tokenizer, make_envs(2), ChatFormat(tokenizer), env_id=ENV, policy=runner)
    trainer.iteration()
    trainer.iteration()
    assert runner.events == ["sync", "sleep", "sync", "sleep"]  # asleep during each update, synced before each rollout


def test_an_iteration_moves_a_progress_bar_turn_by_turn(tiny):
    """Given an EpisodeProgress, RL collection reports every turn (shares of an episode), not only episode ends;
    the shares and the ends add up to the episodes played."""
    from agentenv.rollout import EpisodeProgress

    model, tokenizer = tiny
    config = RLConfig(algorithm="grpo", episodes=4, group_size=2, max_new_tokens=4, num_envs=2)
    envs = make_envs(invalid_action_penalty=0.5)
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=0, env_id=ENV)
    moves: list[float] = []
    trainer.iteration(on_episode=EpisodeProgress(moves.append, envs[0].unwrapped.max_turns))
    assert sum(moves) == pytest.approx(4.0)
    assert sum(0 < m < 1 for m in moves) >= 4  # at least one turn of each episode moved the bar before its end


def checkpointed_layers(model):
    """How many decoder layers recompute their activations in the backward pass."""
    return sum(layer.gradient_checkpointing is True for layer in model.model.layers)


def saved_bytes(model, batch):
    """Bytes autograd keeps for the backward pass of one training forward (what gradient checkpointing cuts)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        agent_forward(model, batch)
    model.eval()
    return total[0]


def test_gradient_checkpointing_keeps_less_and_trains_to_the_same_weights_bit_for_bit(played):
    from agentenv.models import enable_gradient_checkpointing

    _, tokenizer, trajectories = played
    batch = collate(trajectories, tokenizer.pad_token_id)
    config = RLConfig(algorithm="ppo", episodes=4, group_size=1, max_new_tokens=5, num_envs=2, lr=1e-3)
    trainers = []
    for checkpointing in (False, True):
        model, tokenizer = tiny_model(seed=0)
        if checkpointing:
            assert enable_gradient_checkpointing(model) is model and checkpointed_layers(model) == 2
        envs = make_envs(2, invalid_action_penalty=0.5)
        trainers.append(RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=7))
        trainers[-1].policy = LookOrBabble(tokenizer)
    plain, checkpointed = trainers
    assert saved_bytes(checkpointed.model, batch) < 0.5 * saved_bytes(plain.model, batch)
    for trainer in trainers:
        trainer.iteration()
    for (name, a), b in zip(plain.model.named_parameters(), checkpointed.model.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(plain.value_head.linear.weight, checkpointed.value_head.linear.weight)
    start = tiny_model(seed=0)[0].parameters()
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.parameters(), start, strict=True))  # it trained

    env = agentenv.make(ENV)
    chats = [play_episode(env, WalkthroughPolicy(), s).messages() for s in range(4)]
    histories = [train_sft(t.model, chats, ChatFormat(tokenizer), batch_size=4, lr=3e-3) for t in trainers]
    assert histories[0] == histories[1]
    for a, b in zip(plain.model.parameters(), checkpointed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_gradient_checkpointing_trains_lora_adapters_and_names_an_unsupported_model():
    import peft

    from agentenv.models import enable_gradient_checkpointing

    model, tokenizer = tiny_model(seed=0)
    enable_gradient_checkpointing(model)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, config)
    adapter = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = RLTrainer(RLConfig(algorithm="rloo", episodes=4, group_size=2, max_new_tokens=5, num_envs=2, lr=1e-2),
                        model, tokenizer, make_envs(2, invalid_action_penalty=0.5), ChatFormat(tokenizer))  # fmt: skip
    trainer.policy = LookOrBabble(tokenizer)
    trainer.iteration()  # non-reentrant checkpointing: the adapters get gradients without input gradients
    assert any(not torch.equal(adapter[n], p) for n, p in model.named_parameters() if n in adapter)
    with pytest.raises(ConfigError, match=r"model.gradient_checkpointing=true: Linear does not support"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))
