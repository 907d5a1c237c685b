"""Multi-turn RL on token-exact trajectories: PPO (value head, token-level GAE), GRPO, RLOO, REINFORCE++.

One iteration, top to bottom (:meth:`RLTrainer.iteration`):

1. play ``episodes`` episodes on training tasks (``group_size`` episodes per task seed) with the current policy;
2. one no-grad pass gives the log-probs the update ratios start from (and values, and reference log-probs);
3. the algorithm's advantage estimator (registered by name, :mod:`agentenv.policies.estimators`) turns turn
   rewards into per-token advantages;
4. ``epochs`` x ``minibatches`` clipped policy-gradient steps (:mod:`agentenv.policies.loss`), accumulated over
   micro-batches, with grad-norm clipping.

Everything random in an iteration is seeded from ``(seed, iteration)``, so a run resumed from a checkpoint makes
the same next update as the run that was never stopped.

With an ``accelerate.Accelerator`` (``accelerate launch --num_processes N``), each process plays its own share of the
iteration's task groups and the processes train one model (DDP, or FSDP from accelerate's config): loss
denominators, advantage normalisation and metrics are global, so N processes make the update one process makes
on the whole batch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from agentenv.errors import ConfigError, check_range
from agentenv.policies import advantages as adv
from agentenv.policies.checkpoint import atomic_folder
from agentenv.policies.estimators import EstimatorInputs, estimator_names, get_estimator
from agentenv.policies.local import Sampling, TransformersPolicy
from agentenv.policies.loss import (
    AgentBatch,
    agent_forward,
    kl_penalty,
    policy_loss,
    sft_loss,
    tis_weights,
    value_loss,
)
from agentenv.policies.rl_config import DivergedError, RLConfig, check_finite, check_positive  # noqa: F401 (re-exported)

#: The registered estimators' names (``rl.algorithm``); a new one is a module in agentenv/policies/estimators/.
ALGORITHMS = estimator_names()


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every element of ``tensors`` is finite (this process's shard of sharded ones), in one sync."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]
    return bool(torch.stack([t.detach().isfinite().all() for t in local]).all()) if local else True


class ValueHead(torch.nn.Module):
    """V(state) from the policy's last hidden state at each agent position (a critic sharing the trunk)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype))


class PolicyWithValue(torch.nn.Module):
    """The policy and its optional value head as one module whose forward is :func:`agent_forward`: what a DDP or
    FSDP wrapper wraps, so the whole agent forward (the language-model head at agent positions too) runs inside it."""

    def __init__(self, model: Any, value_head: ValueHead | None = None):
        super().__init__()
        self.model, self.value_head = model, value_head
        self._no_split_modules = getattr(model, "_no_split_modules", None)  # FSDP's auto-wrap reads it

    def forward(self, batch: AgentBatch, temperature: float = 1.0, entropy: bool = False) -> dict[str, torch.Tensor]:
        return agent_forward(self.model, batch, temperature=temperature, value_head=self.value_head, entropy=entropy)

    def tie_weights(self) -> None:
        """Tie the model's tied weights again (accelerate's FSDP2 preparation unties them moving the model)."""
        tie = getattr(self.model, "tie_weights", None)
        if tie is not None:
            tie()


def collate(trajectories: Sequence[Any], pad_id: int) -> AgentBatch:
    """Right-padded rows and per-row agent tokens from :class:`~agentenv.rollout.Trajectory` records.

    The logits at sequence index ``i`` predict token ``i + 1``, so an agent token at index ``t`` is read at
    position ``t - 1``. Each turn's reward goes on its last token; episodes group by task seed.
    """
    rows = len(trajectories)
    width = max(len(t.token_ids) for t in trajectories)
    agents = max(1, max(sum(t.loss_mask) for t in trajectories))
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    positions = torch.zeros((rows, agents), dtype=torch.long)
    targets = torch.zeros((rows, agents), dtype=torch.long)
    mask = torch.zeros((rows, agents))
    rewards = torch.zeros((rows, agents))
    logprobs = torch.zeros((rows, agents))
    returns = torch.zeros(rows)
    for r, t in enumerate(trajectories):
        n = len(t.token_ids)
        input_ids[r, :n] = torch.tensor(t.token_ids, dtype=torch.long)
        attention[r, :n] = 1
        agent = [i for i, m in enumerate(t.loss_mask) if m]
        if agent and agent[0] == 0:
            raise ConfigError("a trajectory starts with an agent token: there is no prompt to predict it from")
        k = len(agent)
        positions[r, :k] = torch.tensor([i - 1 for i in agent], dtype=torch.long)
        targets[r, :k] = torch.tensor([t.token_ids[i] for i in agent], dtype=torch.long)
        mask[r, :k] = 1
        if t.logprobs:
            logprobs[r, :k] = torch.tensor([float(t.logprobs[i]) for i in agent])
        where = {i: j for j, i in enumerate(agent)}
        turn_rewards = [turn.reward for turn in getattr(t, "turns", [])]
        for (_, end), reward in zip(t.turn_spans, turn_rewards, strict=False):
            rewards[r, where[end - 1]] += float(reward)
        returns[r] = float(sum(turn_rewards))
    groups = [getattr(t, "seed", i) for i, t in enumerate(trajectories)]
    return AgentBatch(input_ids, attention, positions, targets, mask, rewards, logprobs, returns, groups)


def padding_batch(rows: int, pad_id: int) -> AgentBatch:
    """``rows`` rows of two pad tokens and no agent token (mask 0): ``rows=0`` is an empty batch, ``rows=1`` the
    micro-batch a process without data runs so that every process makes the same collective calls."""
    ids = torch.full((rows, 2), pad_id, dtype=torch.long)
    zeros = torch.zeros((rows, 1))
    return AgentBatch(ids, torch.ones_like(ids), torch.zeros((rows, 1), dtype=torch.long),
                      torch.full((rows, 1), pad_id, dtype=torch.long), zeros, zeros.clone(), zeros.clone(),
                      torch.zeros(rows), [None] * rows)  # fmt: skip


def micro_batches(indices: Sequence[int], size: int, lengths: torch.Tensor | None = None) -> list[list[int]]:
    """Split ``indices`` into groups of ``size``; rows of similar ``lengths`` go together, so less padding is
    computed (the accumulated gradient of a mini-batch does not depend on how it is split)."""
    order = sorted(indices, key=lambda i: int(lengths[i])) if lengths is not None else list(indices)
    return [order[i : i + size] for i in range(0, len(order), size)]


class RLTrainer:
    """Holds what a run carries between iterations: the policy (and value head, reference), optimiser, counters.

    ``envs`` are ready gym envs on the train split (e.g. ``agentenv.make(id)`` x ``num_envs``); ``chat_format``
    encodes their messages for ``tokenizer``. ``model`` is trained in place and, by default, also generates the
    rollouts. ``policy`` gives another runner the generation (a vLLM engine, a second copy of the model elsewhere):
    the trainer owns the trainable ``model`` and hands the runner its weights — ``policy.sync_weights(state_dict)``
    — before the first rollout and after every update, so each rollout is played by the weights being trained.

    ``accelerator`` (an ``accelerate.Accelerator`` with ``gradient_accumulation_steps=1``; None: this process alone)
    makes the trainer one of ``accelerator.num_processes`` data-parallel processes: each plays a contiguous share
    of the iteration's task groups (``episodes / group_size`` must divide by the number of processes), the policy
    and value head (:class:`PolicyWithValue`) and the optimiser go through ``accelerator.prepare``, and every
    process must call :meth:`iteration`, :meth:`save` and :meth:`load` together. ``model`` stays the unwrapped
    model that generates; :meth:`save` writes from the main process only. Under FSDP (version 2, from accelerate's
    config) the weights are sharded between forwards and whole on every process while it generates
    (:meth:`full_parameters`); LoRA is not supported there, and one Accelerator prepares one trainer (call
    ``accelerator.free_memory()`` before the next: accelerate's FSDP clipping looks the model up).
    """

    def __init__(
        self,
        config: RLConfig,
        model: Any,
        tokenizer: Any,
        envs: list[Any],
        chat_format: Any,
        *,
        seed: int = 0,
        env_id: str = "",
        parse: Callable[[str], Any] | None = None,
        accelerator: Any = None,
        policy: Any = None,
    ):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.accelerator = accelerator
        self.num_processes = accelerator.num_processes if accelerator is not None else 1
        self.process_index = accelerator.process_index if accelerator is not None else 0
        self.fsdp = accelerator is not None and accelerator.distributed_type == "FSDP"  # else DDP, or one process
        if accelerator is not None:
            steps = accelerator.gradient_accumulation_steps
            if steps != 1:
                raise ConfigError(
                    f"RLTrainer accumulates micro-batches itself: create the Accelerator with "
                    f"gradient_accumulation_steps=1, not {steps}"
                )
            if self.fsdp and not accelerator.is_fsdp2:
                raise ConfigError("RLTrainer supports FSDP2 only: set fsdp_version: 2 in the accelerate config")
            if self.fsdp and is_lora(model):
                raise ConfigError("LoRA under FSDP is not supported yet: train LoRA models without FSDP (DDP)")
            groups = config.episodes // config.group_size
            if groups % self.num_processes:
                raise ConfigError(
                    f"episodes={config.episodes}: its {groups} task groups (of group_size={config.group_size}) must "
                    f"split evenly over {self.num_processes} processes"
                )
        self.envs, self.chat_format, self.seed, self.env_id, self.parse = envs, chat_format, seed, env_id, parse
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.policy = (
            policy if policy is not None else TransformersPolicy(model, tokenizer, batch_size=max(len(envs), 1))
        )
        self.external_policy, self._policy_synced = policy is not None, False
        if policy is not None:
            if not callable(getattr(policy, "sync_weights", None)):
                raise ConfigError(f"policy {type(policy).__name__} generates for RLTrainer but cannot take the trained "
                                  "weights: it needs a sync_weights(state_dict) method")  # fmt: skip
            if self.fsdp:
                raise ConfigError("a separate generation policy under FSDP is not supported yet: every process "
                                  "would need the gathered weights; use DDP or the default policy")  # fmt: skip
        self.value_head = None
        params: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
        self.estimator = get_estimator(config.algorithm)
        if self.estimator.critic:
            device = next(model.parameters()).device
            self.value_head = ValueHead(model.config.hidden_size).to(device)
            params.append({"params": list(self.value_head.parameters()), "lr": config.value_lr})
        self.reference = None
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.module = PolicyWithValue(model, self.value_head)
        self.optimizer = torch.optim.AdamW(params, weight_decay=config.weight_decay)
        self.train_module: Any = self.module  # what the loss is computed through (a DDP/FSDP wrapper, if any)
        if self.fsdp:  # accelerate's bf16 policy casts every output to bf16: the log-probs and values stay fp32
            plugin = accelerator.state.fsdp_plugin
            policy = plugin.mixed_precision_policy
            if dataclasses.is_dataclass(policy) and getattr(policy, "output_dtype", None) is not None:
                plugin.mixed_precision_policy = dataclasses.replace(policy, output_dtype=None)
        if accelerator is not None:
            self.train_module, self.optimizer = accelerator.prepare(self.module, self.optimizer)
            if self.reference is not None:
                self.reference.to(accelerator.device)
            if self.fsdp:  # FSDP2 sets itself up in the root's first forward, which must come first
                with torch.no_grad():
                    self.train_module(self._to_device(padding_batch(1, self.pad_id)))
                self._reshard()
        self.iteration_done = 0  # completed iterations

    # ---- one iteration ----------------------------------------------------------------------------------
    def task_seeds(self, iteration: int) -> list[int]:
        c = self.config
        rng = random.Random(self.seed * 1_000_003 + iteration)
        tasks = rng.sample(range(c.train_tasks), min(c.train_tasks, c.episodes // c.group_size))
        while len(tasks) < c.episodes // c.group_size:  # a pool smaller than one iteration's tasks
            tasks.append(rng.randrange(c.train_tasks))
        return [s for s in tasks for _ in range(c.group_size)]

    def local_task_seeds(self, iteration: int) -> list[int]:
        """This process's contiguous share of :meth:`task_seeds` (whole groups; all of them without accelerator)."""
        seeds = self.task_seeds(iteration)
        share = len(seeds) // self.num_processes
        return seeds[self.process_index * share : (self.process_index + 1) * share]

    def collect(self, iteration: int, on_episode: Any = None) -> list[Any]:
        """This iteration's episodes. ``on_episode(trajectory)`` is called as each ends; an
        :class:`~agentenv.rollout.EpisodeProgress` is also told of every turn and of long generations' tokens."""
        from agentenv.rollout import rollout

        c = self.config
        seed = self.seed * 1_000_003 + iteration + (self.process_index << 32)  # processes draw differently
        sampling = Sampling(c.max_new_tokens, c.temperature, c.top_p, seed=seed)
        self.model.eval()
        if self.external_policy and not self._policy_synced:
            self.sync_policy()
        progress = getattr(on_episode, "episode", on_episode)  # an EpisodeProgress moves turn by turn too
        with self.full_parameters():
            trajectories = rollout(
                self.envs, self.policy, self.chat_format, self.local_task_seeds(iteration), sampling=sampling,
                max_context_tokens=c.max_context_tokens, env_id=self.env_id, policy_name="rl", on_episode=progress,
                on_turn=getattr(on_episode, "turn", None), on_tokens=getattr(on_episode, "tokens", None),
                parse=self.parse,
            )  # fmt: skip
        if self.external_policy and getattr(self.policy, "enable_sleep_mode", False):
            self.policy.sleep()  # the engine frees its GPU memory for the update; the next sync wakes it
        return trajectories

    @torch.no_grad()
    def score(self, batch: AgentBatch) -> dict[str, torch.Tensor]:
        """The no-grad pass over the rollout: old log-probs (and values, reference log-probs) per agent token."""
        c = self.config
        out = {"old_logprobs": torch.zeros_like(batch.mask), "old_values": torch.zeros_like(batch.mask)}
        out["ref_logprobs"] = torch.zeros_like(batch.mask)
        for rows in self._same_count(micro_batches(range(len(batch)), c.micro_batch_size, batch.attention_mask.sum(1))):
            if rows is None:  # this process has fewer micro-batches than another: a forward for the collectives
                self.train_module(self._to_device(padding_batch(1, self.pad_id)), temperature=c.temperature)
                continue
            part = batch.rows(rows)
            k = part.mask.shape[1]
            f = self.train_module(self._to_device(part), temperature=c.temperature)
            out["old_logprobs"][rows, :k] = f["logprobs"].cpu()
            if "values" in f:
                out["old_values"][rows, :k] = f["values"].cpu()
            if self.reference is not None:
                r = agent_forward(self.reference, self._to_device(part), temperature=c.temperature)
                out["ref_logprobs"][rows, :k] = r["logprobs"].cpu()
        return out

    def advantages(self, batch: AgentBatch, scored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, mask = self.config, batch.mask
        rewards = batch.rewards.clone()
        kl = (scored["old_logprobs"] - scored["ref_logprobs"]) * mask  # k1 estimate on the sampled tokens
        if self.reference is None:
            kl = torch.zeros_like(kl)  # no reference model: there is no KL to report or pay
        if self.reference is not None and c.kl_in == "reward":
            rewards = rewards - c.kl_coef * kl
        returns = batch.returns - (c.kl_coef * kl.sum(1) if self.reference is not None and c.kl_in == "reward" else 0)
        inputs = EstimatorInputs(rewards=rewards, returns=returns, mask=mask, values=scored["old_values"],
                                 group_ids=batch.group_ids, config=c, whiten=self._whiten,
                                 num_processes=self.num_processes)  # fmt: skip
        return {**self.estimator(inputs), "kl": kl}

    def update(self, batch: AgentBatch, scored: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
               iteration: int) -> dict[str, float]:  # fmt: skip
        c = self.config
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        totals: dict[str, float] = {}
        steps = 0
        self.model.train()
        for _ in range(c.epochs):
            order = torch.randperm(len(batch), generator=generator).tolist()
            for mb in range(c.minibatches):
                members = order[mb :: c.minibatches]
                denom = float(self._sum(batch.mask[members].sum()).clamp(min=1))  # all processes' agent tokens
                self.optimizer.zero_grad(set_to_none=True)
                stats: dict[str, float] = {}
                groups = self._same_count(micro_batches(members, c.micro_batch_size, batch.attention_mask.sum(1)))
                for i, rows in enumerate(groups):
                    part = batch.rows(rows) if rows is not None else padding_batch(1, self.pad_id)
                    k = part.mask.shape[1]
                    with self._no_sync(last=i == len(groups) - 1):
                        f = self.train_module(self._to_device(part), temperature=c.temperature, entropy=True)
                        dev = f["logprobs"].device
                        mask = part.mask.to(dev)

                        def take(name: str, rows: Any = rows, k: int = k, dev: Any = dev) -> torch.Tensor:
                            if rows is None:
                                return torch.zeros((1, k), device=dev)
                            source = scored if name in scored else targets
                            return source[name][rows, :k].to(dev)

                        tis = take("tis_weights") if "tis_weights" in scored else None
                        loss, pg = policy_loss(f["logprobs"], take("old_logprobs"), take("advantages"), mask, denom,
                                               c.clip, c.clip_high, tis)  # fmt: skip
                        parts = {"pg_loss": loss.item()}
                        if self.value_head is not None:
                            vl = value_loss(f["values"], take("old_values"), take("returns"), mask, denom, c.vf_clip)
                            loss = loss + c.vf_coef * vl
                            parts["vf_loss"] = vl.item()
                        entropy = (f["entropy"] * mask).sum() / denom
                        if c.ent_coef:
                            loss = loss - c.ent_coef * entropy
                        if self.reference is not None and c.kl_in == "loss":
                            kl = (kl_penalty(f["logprobs"], take("ref_logprobs")) * mask).sum() / denom
                            loss = loss + c.kl_coef * kl
                            parts["kl_loss"] = kl.item()
                        if self.accelerator is None:
                            loss.backward()
                        else:  # the wrapper averages gradients over processes; the loss is this one's share of a sum
                            self.accelerator.backward(loss * self.num_processes)
                    share = float(part.mask.sum()) / denom
                    parts.update(entropy=entropy.item(), **{k_: v * share for k_, v in pg.items()})
                    for name, value in parts.items():
                        stats[name] = stats.get(name, 0.0) + value
                if self.accelerator is None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                else:
                    grad_norm = self.accelerator.clip_grad_norm_(self.train_module.parameters(), c.max_grad_norm)
                where = f"rl iteration {iteration + 1}, update step {steps + 1}"
                if not math.isfinite(float(grad_norm)):  # the norm is global: every process stops here together
                    raise DivergedError(f"{where}: the gradient norm is {float(grad_norm)} (non-finite); training "
                                        "stopped before this update")  # fmt: skip
                self.optimizer.step()
                bad = 0.0 if all_finite(params) else 1.0
                if self._sum(torch.tensor([bad])).item() > 0:
                    raise DivergedError(f"{where}: the weights are non-finite after the update (lr={c.lr}); "
                                        "training stopped")  # fmt: skip
                names = sorted(stats)  # shares of mini-batch sums: their sum over processes is the global value
                summed = self._sum(torch.tensor([stats[n] for n in names], dtype=torch.float64)).tolist()
                stats = dict(zip(names, summed, strict=True))
                stats["grad_norm"] = float(grad_norm)
                for name, value in stats.items():
                    totals[name] = totals.get(name, 0.0) + value
                steps += 1
        self.model.eval()
        clear = getattr(self.policy, "clear_cache", None)
        if clear is not None:
            clear()
        return {name: value / steps for name, value in totals.items()}

    def iteration(self, on_episode: Any = None) -> dict[str, Any]:
        """Run the next iteration (collect, score, estimate, update); returns its metrics (of all processes)."""
        from agentenv.rollout import summarize

        it = self.iteration_done
        started = time.perf_counter()
        trajectories = self.collect(it, on_episode)
        rollout_seconds = time.perf_counter() - started
        everyone = trajectories
        if self.num_processes > 1:
            from accelerate.utils import gather_object

            everyone = gather_object(trajectories)
        usable = [t for t in trajectories if not t.error and t.turn_spans]
        usable_anywhere = sum(1 for t in everyone if not t.error and t.turn_spans)
        metrics: dict[str, Any] = {"iteration": it + 1, **summarize(everyone)}
        if usable_anywhere:
            batch = collate(usable, self.pad_id) if usable else padding_batch(0, self.pad_id)
            scored = self.score(batch)
            metrics.update(self.sampler_gap(batch, scored))
            targets = self.advantages(batch, scored)
            metrics.update(self.update(batch, scored, targets, it))
            self._policy_synced = False  # the next rollout's runner needs the updated weights
            kl, tokens = self._sum(torch.stack([targets["kl"].sum(), batch.mask.sum()]))
            metrics["kl_ref"] = float((kl / tokens.clamp(min=1)).item())
            metrics["agent_tokens"] = int(tokens)
        metrics["skipped_episodes"] = len(everyone) - usable_anywhere
        metrics["rollout_seconds"] = rollout_seconds
        metrics["seconds"] = time.perf_counter() - started
        self.iteration_done += 1
        return metrics

    def sampler_gap(self, batch: AgentBatch, scored: dict[str, torch.Tensor]) -> dict[str, float]:
        """How far the sampling log-probs (the runner's, e.g. vLLM in bf16) are from the trainer's old log-probs on
        this process's agent tokens; with ``tis_cap`` set, the truncated importance weights go into ``scored``.
        Nothing when the runner returned no log-probs (all zero)."""
        if not bool((batch.rollout_logprobs * batch.mask).abs().sum() > 0):
            return {}
        cap = self.config.tis_cap
        limit = math.inf if cap is None else cap
        weights, gap = tis_weights(scored["old_logprobs"], batch.rollout_logprobs, batch.mask, limit)
        if cap is not None:
            scored["tis_weights"] = weights
        return gap

    def sync_policy(self) -> None:
        """Hand the separate generation policy the current weights (each process its own runner; a LoRA model's
        merged weights)."""
        weights = merged_state_dict(self.model) if is_lora(self.model) else self.model_state_dict()
        self.policy.sync_weights(weights)
        self._policy_synced = True

    # ---- data parallelism ------------------------------------------------------------------------------
    def _sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (``values`` itself in one process), on the CPU."""
        if self.num_processes == 1:
            return values
        return self.accelerator.reduce(values.to(self.accelerator.device), "sum").cpu()

    def _same_count(self, groups: list[list[int]]) -> list[list[int] | None]:
        """``groups`` padded with None to the longest list of any process: forwards (and DDP/FSDP's collectives in
        them) must match across processes, and a process may have fewer micro-batches, or none."""
        if self.num_processes == 1:
            return list(groups)
        most = int(self.accelerator.gather(torch.tensor([len(groups)], device=self.accelerator.device)).max())
        return [*groups, *[None] * (most - len(groups))]

    def _no_sync(self, last: bool) -> Any:
        """Gradients are all-reduced on the last micro-batch of a mini-batch only."""
        if self.accelerator is None or last:
            return nullcontext()
        return self.accelerator.no_sync(self.train_module)

    def _whiten(self, values: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
        """:func:`~agentenv.policies.advantages.whiten` with the mean and std of every process's masked entries."""
        if self.num_processes == 1:
            return adv.whiten(values, mask, eps)
        m = mask.to(values.dtype)
        n, total = self._sum(torch.stack([m.sum(), (values * m).sum()]))
        n = n.clamp(min=1)
        mean = total / n
        std = (self._sum(((values - mean) ** 2 * m).sum()) / n).sqrt()
        return (values - mean) / (std + eps) * m

    @contextmanager
    def full_parameters(self) -> Iterator[None]:
        """Whole parameters in :attr:`model` while the block runs (FSDP2 shards them between forwards), so that it
        can generate without collectives: every process enters and leaves together; a no-op without FSDP."""
        if not self.fsdp:
            yield
            return
        units = self._fsdp_units()
        for unit in units:
            unit.unshard()
        inner = [unit for unit in units if unit is not self.train_module]  # the root's forward is not called
        for unit in inner:
            unit.set_reshard_after_forward(False, recurse=False)
        try:
            yield
        finally:
            for unit in inner:
                unit.set_reshard_after_forward(self.accelerator.state.fsdp_plugin.reshard_after_forward, recurse=False)
            self._reshard()

    def _fsdp_units(self) -> list[Any]:
        from torch.distributed.fsdp import FSDPModule

        return [m for m in self.train_module.modules() if isinstance(m, FSDPModule)]

    def _reshard(self) -> None:
        """Sharded parameters everywhere (the root keeps its own after a forward), as state dicts expect."""
        for unit in self._fsdp_units():
            unit.reshard()

    def _to_device(self, batch: AgentBatch) -> AgentBatch:
        return batch.to(next(self.model.parameters()).device)

    # ---- checkpoints ------------------------------------------------------------------------------------
    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole weights of :attr:`model` (what ``save_pretrained`` writes). Under FSDP they are gathered:
        every process calls it, the main process gets them and the others an empty dict."""
        if not self.fsdp:
            return self.model.state_dict()
        weights = self._gathered_state_dict()
        return {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith("model.")}

    def _gathered_state_dict(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        self._reshard()
        return get_model_state_dict(self.train_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """A checkpoint folder: the model (a model folder ``load_model`` reads; LoRA: the adapter), value head,
        optimiser, counters. Swapped in by :func:`~agentenv.policies.checkpoint.atomic_folder`: after a kill at any
        step, :func:`~agentenv.policies.checkpoint.recover` finds a complete checkpoint, the new one or the old.
        With an accelerator, every process calls it and the main process writes (under FSDP, the gathered whole
        state; its optimiser state is keyed by parameter name and resumes under FSDP only)."""
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            weights = self._gathered_state_dict()
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # the main process gets it all
            optimizer = get_optimizer_state_dict(self.train_module, self.optimizer.optimizer, options=options)
        if self.accelerator is not None and not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return Path(path)
        with atomic_folder(path) as tmp:
            state: dict[str, Any] = {}
            if self.fsdp:
                part = {name: {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(name + ".")}
                        for name in ("model", "value_head")}  # fmt: skip
                write_model(self.model, self.tokenizer, tmp, state_dict=part["model"])
                state["optimizer"], state["optimizer_keys"] = optimizer, "names"
                if self.value_head is not None:
                    state["value_head"] = part["value_head"]
            else:
                write_model(self.model, self.tokenizer, tmp)
                state["optimizer"] = self.optimizer.state_dict()
                if self.value_head is not None:
                    state["value_head"] = self.value_head.state_dict()
            if self.reference is not None:
                state["reference"] = self.reference.state_dict()
            torch.save(state, tmp / "trainer_state.pt")
            self.save_extra(tmp)
            meta = {"iteration_done": self.iteration_done, "seed": self.seed, "config": asdict(self.config)}
            (tmp / "trainer.json").write_text(json.dumps({**meta, **(extra or {})}, indent=1))
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        return Path(path)

    def save_extra(self, folder: Path) -> None:
        """A subclass's own state, written into the checkpoint ``folder`` before it is swapped in (so it is part of
        the same atomic checkpoint); :meth:`load_extra` reads it back."""

    def load_extra(self, folder: Path) -> None:
        """Restore what :meth:`save_extra` wrote."""

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save` into this trainer; returns its ``trainer.json``."""
        from agentenv.policies.checkpoint import is_complete

        self._policy_synced = False  # a separate generation policy gets the restored weights before it plays

        path = Path(path)
        if not is_complete(path):
            raise ConfigError(f"{path} holds no complete checkpoint; after a kill, agentenv.policies.checkpoint."
                              f"recover({str(path)!r}) moves the newest complete one there")  # fmt: skip
        meta = json.loads((path / "trainer.json").read_text())
        state = torch.load(path / "trainer_state.pt", weights_only=True)
        fsdp = self.fsdp
        if (state.get("optimizer_keys") == "names") != fsdp:
            raise ConfigError(f"{path} was written {'without' if fsdp else 'with'} FSDP: its optimiser state resumes "
                              f"{'without' if fsdp else 'under'} FSDP only")  # fmt: skip
        if fsdp:
            from safetensors.torch import load_file
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            files = sorted(path.glob("*.safetensors"))
            weights = {f"model.{k}": v for file in files for k, v in load_file(file).items()}
            weights.update({f"value_head.{k}": v for k, v in state.get("value_head", {}).items()})
            self._reshard()
            options = StateDictOptions(full_state_dict=True, strict=False)
            missing, unexpected = set_model_state_dict(self.train_module, weights, options=options)
            if [k for k in missing if "lm_head" not in k and "embed" not in k] or unexpected:
                raise ConfigError(f"weights in {path} do not match: missing {missing}, unexpected {unexpected}")
            set_optimizer_state_dict(self.train_module, self.optimizer.optimizer, state["optimizer"], options=options)
        else:
            load_weights(self.model, path)
            self.optimizer.load_state_dict(state["optimizer"])
            if self.value_head is not None:
                self.value_head.load_state_dict(state["value_head"])
        if self.reference is not None and "reference" in state:
            self.reference.load_state_dict(state["reference"])
        self.iteration_done = int(meta["iteration_done"])
        self.load_extra(path)
        clear = getattr(self.policy, "clear_cache", None)
        if clear is not None:
            clear()
        return meta


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config")


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The weights a LoRA (peft) model computes with, under the base model's names: W + the active adapters' deltas,
    computed aside (merging and unmerging in place would drift the base weights by rounding at every sync). A model
    without adapters gives its state dict."""
    if not is_lora(model):
        return dict(model.state_dict())
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in base.state_dict().items():
        if "lora_" in name or ".original_module." in name:
            continue
        name = name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
        weights[name] = tensor.detach()
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        key = f"{name}.weight"
                        weights[key] = weights[key] + module.get_delta_weight(adapter).to(weights[key].dtype)
    return weights


def write_model(
    model: Any, tokenizer: Any, folder: Path, *, merge_lora: bool = False, state_dict: dict[str, Any] | None = None
) -> None:
    """``save_pretrained`` of model and tokenizer (of ``state_dict``'s weights, if given). A LoRA model writes its
    adapter, or with ``merge_lora`` the merged full model (which consumes the adapter: use it last)."""
    from agentenv.models import quiet_transformers

    with quiet_transformers():
        kwargs = {"state_dict": state_dict} if state_dict is not None else {}
        (model.merge_and_unload() if merge_lora and is_lora(model) else model).save_pretrained(folder, **kwargs)
        tokenizer.save_pretrained(folder)


def load_weights(model: Any, folder: str | Path) -> None:
    """Load the weights that :func:`write_model` wrote into ``model`` in place; a mismatch is an error."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if is_lora(model):
        from peft import set_peft_model_state_dict

        adapter = folder / "adapter_model.safetensors"
        if not adapter.is_file():
            raise ConfigError(f"{folder} holds no LoRA adapter (adapter_model.safetensors) for this LoRA model")
        result = set_peft_model_state_dict(model, load_file(adapter))
        if result.unexpected_keys:
            raise ConfigError(f"adapter in {folder} does not match the model: unexpected {result.unexpected_keys}")
        return
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(file))
    if not weights:
        raise ConfigError(f"{folder} holds no *.safetensors weights")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if "lm_head" in k or "embed" in k}
    if set(missing) - tied or unexpected:
        raise ConfigError(f"weights in {folder} do not match the model: missing {missing}, unexpected {unexpected}")


def train_sft(
    model: Any,
    chats: Sequence[Sequence[dict]],
    chat_format: Any,
    *,
    epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 8,
    micro_batch_size: int = 4,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Supervised fine-tuning on conversations: NLL of the assistant tokens only, the same masks as RL.

    ``chats`` are message lists (``agentenv sft-data`` records' ``messages``); each is encoded by
    :meth:`~agentenv.chat_format.ChatFormat.encode_chat`, so demonstrations have the rollout engine's layout.
    Returns one metrics dict per optimiser step.
    """
    from agentenv.rollout import Trajectory

    check_range("epochs", epochs, 1, integer=True)
    check_range("batch_size", batch_size, 1, integer=True)
    check_range("micro_batch_size", micro_batch_size, 1, integer=True)
    check_positive("lr", lr)
    check_positive("max_grad_norm", max_grad_norm)
    if not chats:
        raise ConfigError("train_sft got no conversations to train on")
    rows = []
    for chat in chats:
        ids, mask, spans = chat_format.encode_chat(chat)
        rows.append(Trajectory("", "sft", 0, "", "", "", None, token_ids=ids, loss_mask=mask, turn_spans=spans))
    tokenizer = chat_format.tokenizer
    batch = collate(rows, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(batch), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            members = order[start : start + batch_size]
            denom = float(batch.mask[members].sum().clamp(min=1))
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for rows_ in micro_batches(members, micro_batch_size, batch.attention_mask.sum(1)):
                part = batch.rows(rows_).to(device)
                loss = sft_loss(agent_forward(model, part)["logprobs"], part.mask, denom)
                loss.backward()
                total += loss.item()
            where = f"sft step {len(history) + 1} (epoch {epoch + 1})"
            if not math.isfinite(total):
                raise DivergedError(f"{where}: the loss is {total} (non-finite); training stopped before this update")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            if not math.isfinite(float(grad_norm)):
                raise DivergedError(f"{where}: the gradient norm is {float(grad_norm)} (non-finite); training stopped "
                                    "before this update")  # fmt: skip
            optimizer.step()
            if not all_finite(params):
                raise DivergedError(f"{where}: the weights are non-finite after the update (lr={lr}); training stopped")
            record = {"epoch": epoch + 1, "step": len(history) + 1, "sft_loss": total, "grad_norm": float(grad_norm)}
            history.append(record)
            if on_step is not None:
                on_step(record)
    model.eval()
    return history
