"""TRL's GRPOTrainer learning on an AgentEnv env, on a CPU: SFT on walkthroughs in TRL's tool-call layout, then GRPO.

The offline default model (SmolLM2-135M-Instruct) never writes a tool call by itself, so its GRPO rewards stay at 0.
Here it first learns the layout from the env's own walkthroughs (:func:`agentenv.integrations.trl.walkthrough_chats`:
the chats TRL's tool loop builds, encoded token for token by ``ToolCallChatFormat``, trained by our ``train_sft``),
briefly, on other tasks than the ones GRPO plays; then ``GRPOTrainer(environment_factory=...)`` plays the env
through the ``act`` tool for its reward (1 = solved). Greedy success on the same ``--eval-tasks`` test tasks before
and after GRPO (``evaluate_tool_loop``: TRL's layout, our rollout engine) measures what GRPO changed. GRPO replays
``--train-tasks`` training tasks in passes (2 tasks a step, reshuffled each pass), so the step rewards of the first
and the last pass come from the same tasks and their difference is the model's, not the tasks'. The SFT is kept
short on purpose (20 walkthroughs, 5 steps): 32 walkthroughs already solve nearly every episode and leave GRPO
nothing to raise. Prints one line per GRPO step and a summary; peak RSS 7.6 GB with these settings (1 thread; about
40 minutes on 2 busy cores).

Usage: python examples/trl_grpo.py [--env AgentEnv/KeyDoor-s2k0d1-v0] [--sft-tasks 20] [--steps 8] [--train-tasks 4]
       [--threads 1] [--json runs/trl-grpo/summary.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local: never reach the hub
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is experimental in TRL 1.16
# TRL 1.16 reads `model.is_gradient_checkpointing` before each generation, which transformers 5.2x deprecates in favour
# of `is_activation_checkpointing`: TRL's call, not something a user of this script can change.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--model", default="default", help="load_model name: default (offline SmolLM2), a folder")
    parser.add_argument("--sft-tasks", type=int, default=20, help="walkthroughs of train tasks 0..n-1")
    parser.add_argument("--sft-epochs", type=int, default=1)
    parser.add_argument("--sft-lr", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps (optimiser steps)")
    parser.add_argument("--generations", type=int, default=4, help="GRPO group size (num_generations)")
    parser.add_argument("--tasks-per-step", type=int, default=2, help="tasks per step (x --generations)")
    parser.add_argument("--train-tasks", type=int, default=4, help="GRPO's training tasks, replayed in passes "
                        "(reshuffled each pass): the first and last pass play the same tasks")  # fmt: skip
    parser.add_argument("--lr", type=float, default=1e-5, help="GRPO learning rate")
    parser.add_argument("--eval-tasks", type=int, default=32, help="test tasks played greedily before and after GRPO")
    parser.add_argument("--max-completion-length", type=int, default=384, help="the episode's tokens: calls + results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on a busy machine)")
    parser.add_argument("--output-dir", default="runs/trl-grpo")
    parser.add_argument("--json", type=Path, default=None, help="write the per-step rewards and the summary here")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def sft(model, tokenizer, env_class, args) -> list[dict]:
    """Our SFT trainer on the env's walkthroughs, in exactly the token layout GRPOTrainer builds and parses."""
    from agentenv.integrations.trl import ToolCallChatFormat, walkthrough_chats
    from agentenv.policies.rl import train_sft

    chats = walkthrough_chats(args.env, split="train", n=args.sft_tasks)
    started = time.perf_counter()
    history = train_sft(model, chats, ToolCallChatFormat(tokenizer, env_class), epochs=args.sft_epochs,
                        lr=args.sft_lr, batch_size=4, micro_batch_size=2, seed=args.seed)  # fmt: skip
    losses = " ".join(f"{h['sft_loss']:.3f}" for h in history)
    seconds = time.perf_counter() - started
    print(f"SFT: {len(chats)} walkthroughs, {len(history)} steps, {seconds:.0f} s, loss {losses}", flush=True)
    return history


def grpo_config(args):
    from trl import GRPOConfig

    per_step = args.generations * args.tasks_per_step
    return GRPOConfig(
        output_dir=args.output_dir,
        per_device_train_batch_size=2,  # completions per forward/backward: small keeps the logits small
        gradient_accumulation_steps=max(1, per_step // 2),  # one optimiser step per generation batch (on-policy)
        num_generations=args.generations,
        max_completion_length=args.max_completion_length,  # the whole episode: the agent's turns and tool results
        max_tool_calling_iterations=12,
        max_steps=args.steps,
        learning_rate=args.lr,
        activation_checkpointing=False,  # on CPU (TRL turns it on by default; `gradient_checkpointing` is deprecated)
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
    )


def step_printer(rewards: list[dict], env_name: str):
    """A callback printing each GRPO step's reward (mean over its episodes) and keeping them in ``rewards``."""
    from transformers import TrainerCallback

    class PrintRewards(TrainerCallback):
        started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs:
                return
            row = {"step": state.global_step, "reward": logs["reward"],
                   "solved": logs.get(f"rewards/{env_name}/mean", logs["reward"]),
                   "tool_calls": logs.get("tools/call_frequency", 0.0),
                   "completion_tokens": logs.get("completions/mean_length", 0.0),
                   "seconds": time.perf_counter() - self.started}  # fmt: skip
            self.started = time.perf_counter()
            rewards.append(row)
            print(f"step {row['step']:3d}  reward {row['reward']:.3f}  tool calls {row['tool_calls']:.2f}  "
                  f"episode tokens {row['completion_tokens']:.0f}  {row['seconds']:.0f} s", flush=True)  # fmt: skip

    return PrintRewards()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.train_tasks % args.tasks_per_step:
        raise SystemExit(f"--train-tasks ({args.train_tasks}) must be a multiple of --tasks-per-step "
                         f"({args.tasks_per_step}): a pass over the tasks is a whole number of steps")  # fmt: skip
    import torch

    from agentenv.integrations.trl import ensure_tool_template, environment_factory, trl_dataset
    from agentenv.models import load_model

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model, num_threads=args.threads)
    tokenizer = ensure_tool_template(tokenizer)  # SmolLM2's ChatML -> TRL's Qwen2.5 tool-calling template
    env_class = environment_factory(args.env)
    sft_history = sft(model, tokenizer, env_class, args)

    from trl import GRPOTrainer

    rewards: list[dict] = []
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        # GRPO plays train tasks the SFT did not show, sft_tasks .. sft_tasks+train_tasks-1, in passes
        train_dataset=trl_dataset(args.env, split="train", n=args.train_tasks, start=args.sft_tasks),
        environment_factory=env_class,  # act(command: str) -> str, get_reward() -> float (1.0 = solved)
        args=grpo_config(args),
        callbacks=[step_printer(rewards, env_class.__name__)],
    )
    from transformers import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):  # the step lines above say it shorter
        trainer.remove_callback(quiet)
    before = held_out(model, tokenizer, args, "after SFT")
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    after = held_out(model, tokenizer, args, "after GRPO")
    summary = summarize(rewards, args, seconds, sft_history)
    summary.update(held_out_after_sft=before, held_out_after_grpo=after)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "steps": rewards, "sft": sft_history}, indent=1))
    return summary


def held_out(model, tokenizer, args, label: str) -> dict:
    """Greedy success on the env's first ``--eval-tasks`` test tasks, in TRL's tool-call layout (our rollout engine):
    the same tasks before and after GRPO, where the per-step rewards above are each on 2 new training tasks."""
    from agentenv.integrations.trl import evaluate_tool_loop

    if args.eval_tasks <= 0:
        return {}
    started = time.perf_counter()
    result = evaluate_tool_loop(model, tokenizer, args.env, range(args.eval_tasks))
    print(f"held-out ({label}): {result['solved']}/{result['episodes']} test tasks solved, greedy "
          f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    return result


def summarize(rewards: list[dict], args: argparse.Namespace, seconds: float, sft_history: list[dict]) -> dict:
    """The mean step reward of the first and the last pass over the training tasks (the same tasks, reshuffled)."""
    per_pass = max(1, args.train_tasks // args.tasks_per_step)
    first = sum(r["reward"] for r in rewards[:per_pass]) / max(1, len(rewards[:per_pass]))
    last = sum(r["reward"] for r in rewards[-per_pass:]) / max(1, len(rewards[-per_pass:]))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    summary = {"env": args.env, "steps": len(rewards), "episodes_per_step": args.generations * args.tasks_per_step,
               "train_tasks": args.train_tasks, "steps_per_pass": per_pass, "sft_walkthroughs": args.sft_tasks,
               "sft_steps": len(sft_history), "first_pass_reward": first, "last_pass_reward": last,
               "grpo_seconds": seconds, "peak_rss_gb": peak_gb, "threads": args.threads}  # fmt: skip
    print(f"reward on the same {args.train_tasks} training tasks: first pass (steps 1-{per_pass}) {first:.3f}"
          f" -> last pass {last:.3f}  ({len(rewards)} steps, {seconds / 60:.1f} min, {peak_gb:.1f} GB)")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
