"""Our GRPO (``RLTrainer``) vs TRL's ``GRPOTrainer(environment_factory=...)``: seconds per update at equal work.

Both train the same model (the default SmolLM2-135M after a short SFT on the env's walkthroughs in TRL's tool-call
layout, so that both play real multi-turn episodes) on the same env (KeyDoor-s2k0d1), the same tasks in the same
order (ours draws them; TRL's dataset replays them), the same group size and episodes per update, the same layout
(TRL's Qwen2.5 tool template, ``act(command)`` calls, ``<tool_response>`` results: ``ToolCallChatFormat``), the same
episode budget (TRL: ``max_completion_length`` tokens of calls + results; ours: the prompt plus that many tokens of
context, at most ``--turn-tokens`` per turn), the same learning rate, micro-batch 2, no KL, one optimiser step per
update, sampling at temperature 1. An episode ends on success, on the turn limit, or on a turn without a tool call
(TRL's rule; ours through a wrapper), so TRL also writes a final answer after the winning call and ours does not.

Each side runs in its own process (1 torch thread each, one at a time): the rounds interleave — ours, TRL, ours,
TRL, ... — so a change in the machine's load hits both. Reported per update: wall seconds and CPU seconds
(``time.process_time``), the same per 1,000 agent tokens (tokens the model generated and trains on), the rollout
share, and both sides' mean episode reward. Round 1 of each side is a warm-up and left out of the ratios.
``ratio`` = ours / TRL wall seconds per update (goal <= 0.8).

Usage: python benchmarks/trl_head_to_head.py [--rounds 4] [--episodes 4] [--group-size 4] [--budget 384]
(writes benchmarks/results/trl_head_to_head.json)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# TRL 1.16 reads `model.is_gradient_checkpointing` before each generation, which transformers 5.2x deprecates in favour
# of `is_activation_checkpointing`: TRL's call, not something a user of this script can change.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

ENV = "AgentEnv/KeyDoor-s2k0d1-v0"
RESULTS = Path(__file__).parent / "results" / "trl_head_to_head.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=ENV)
    p.add_argument("--rounds", type=int, default=4, help="updates per side (the first is a warm-up)")
    p.add_argument("--episodes", type=int, default=4, help="episodes per update")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--budget", type=int, default=384, help="agent + tool tokens per episode")
    p.add_argument("--turn-tokens", type=int, default=64, help="ours: max new tokens per turn")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--sft-tasks", type=int, default=16, help="walkthroughs the shared starting model is SFT'd on")
    p.add_argument("--model-dir", type=Path, default=Path("runs/trl-head-to-head/sft-model"),
                   help="the SFT'd starting model (made if missing)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, default=RESULTS)
    return p.parse_args()


def prepare_model(args: argparse.Namespace) -> None:
    """The shared starting point: the default model after a short SFT on walkthroughs in TRL's layout, saved."""
    import torch

    from agentenv.integrations.trl import (
        ToolCallChatFormat,
        ensure_tool_template,
        environment_factory,
        walkthrough_chats,
    )
    from agentenv.models import load_model
    from agentenv.policies.rl import train_sft, write_model

    torch.manual_seed(0)
    model, tokenizer = load_model("default", num_threads=args.threads)
    ensure_tool_template(tokenizer)
    chats = walkthrough_chats(args.env, n=args.sft_tasks, start=10_000)  # tasks neither side plays
    fmt = ToolCallChatFormat(tokenizer, environment_factory(args.env))
    history = train_sft(model, chats, fmt, lr=1e-4, batch_size=4, micro_batch_size=2)
    losses = " ".join(f"{h['sft_loss']:.3f}" for h in history)
    print(f"SFT on {len(chats)} walkthroughs: loss {losses}", flush=True)
    write_model(model, tokenizer, args.model_dir)


def ours_worker(conn: Any, args: argparse.Namespace) -> None:
    import torch

    import agentenv
    from agentenv.integrations.trl import ToolCallChatFormat, ToolLoop, ensure_tool_template, environment_factory
    from agentenv.models import load_model
    from agentenv.policies.rl import RLConfig, RLTrainer
    from agentenv.policies.tools import parse_turn

    torch.manual_seed(0)
    model, tokenizer = load_model(str(args.model_dir), num_threads=args.threads)
    ensure_tool_template(tokenizer)  # the saved model has TRL's template already; a plain ChatML one gets it
    fmt = ToolCallChatFormat(tokenizer, environment_factory(args.env))
    observation, info = agentenv.make(args.env).reset(seed=0)  # prompts differ by a few tokens between tasks
    prompt = len(fmt.start([{"role": "system", "content": info["instructions"]},
                            {"role": "user", "content": observation}]))  # fmt: skip
    config = RLConfig(algorithm="grpo", iterations=args.rounds, episodes=args.episodes, group_size=args.group_size,
                      micro_batch_size=2, lr=args.lr, max_new_tokens=args.turn_tokens,
                      max_context_tokens=prompt + args.budget, num_envs=args.episodes, temperature=1.0)  # fmt: skip
    envs = [ToolLoop(agentenv.make(args.env)) for _ in range(args.episodes)]
    trainer = RLTrainer(config, model, tokenizer, envs, fmt, env_id=args.env,
                        parse=lambda text: parse_turn(text, style="hermes", tools=fmt.tools))  # fmt: skip
    conn.send({"tasks": [trainer.task_seeds(r)[:: args.group_size] for r in range(args.rounds)]})
    while conn.recv() == "go":
        wall, cpu = time.perf_counter(), time.process_time()
        m = trainer.iteration()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        conn.send({"seconds": wall, "cpu_seconds": cpu, "rollout_seconds": m["rollout_seconds"],
                   "agent_tokens": m.get("agent_tokens", 0), "reward": m["mean_return"],
                   "success_rate": m["success_rate"], "mean_turns": m["mean_turns"],
                   "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})  # fmt: skip


def trl_worker(conn: Any, args: argparse.Namespace, tasks: list[list[int]]) -> None:
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from agentenv.integrations.trl import ensure_tool_template, environment_factory, trl_dataset
    from agentenv.models import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model(str(args.model_dir), num_threads=args.threads)
    ensure_tool_template(tokenizer)
    env_class = environment_factory(args.env)
    rows = [trl_dataset(args.env, n=1, start=seed)[0] for round_ in tasks for seed in round_]
    config = GRPOConfig(output_dir="runs/trl-head-to-head/trl", per_device_train_batch_size=2,
                        gradient_accumulation_steps=args.episodes // 2, num_generations=args.group_size,
                        max_completion_length=args.budget, max_tool_calling_iterations=agentenv_max_turns(args.env),
                        max_steps=args.rounds, learning_rate=args.lr, lr_scheduler_type="constant",
                        activation_checkpointing=False, bf16=False, use_cpu=True, logging_steps=1,
                        save_strategy="no", report_to=[], shuffle_dataset=False, seed=0)  # fmt: skip
    clock: dict[str, float] = {"rollout": 0.0}

    class Rounds(TrainerCallback):
        """One update per "go": waits at the step's start, reports its times and metrics after its log."""

        def on_step_begin(self, args_, state, control, **kwargs):
            if conn.recv() != "go":
                raise SystemExit(0)
            clock.update(wall=time.perf_counter(), cpu=time.process_time(), rollout=0.0)

        def on_step_end(self, args_, state, control, **kwargs):
            clock.update(wall=time.perf_counter() - clock["wall"], cpu=time.process_time() - clock["cpu"])

        def on_log(self, args_, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                conn.send({"seconds": clock["wall"], "cpu_seconds": clock["cpu"], "rollout_seconds": clock["rollout"],
                           "agent_tokens": round(logs["completions/mean_length"] * args.episodes),
                           "reward": logs["reward"], "tool_calls": logs.get("tools/call_frequency", 0.0),
                           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})  # fmt: skip

    trainer = GRPOTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                          environment_factory=env_class, args=config, callbacks=[Rounds()])  # fmt: skip
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    generate = trainer._generate_and_score_completions  # timed: TRL's rollout (generation, tools, rewards)

    def timed(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return generate(*a, **k)
        finally:
            clock["rollout"] += time.perf_counter() - started

    trainer._generate_and_score_completions = timed
    conn.send({"ready": True})
    trainer.train()


def agentenv_max_turns(env_id: str) -> int:
    import agentenv

    return int(agentenv.make(env_id).unwrapped.max_turns)


def start(target: Any, *args: Any) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(child, *args))
    process.start()
    return process, parent


def run_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    ours, ours_conn = start(ours_worker, args)
    tasks = ours_conn.recv()["tasks"]
    trl, trl_conn = start(trl_worker, args, tasks)
    trl_conn.recv()
    rows: dict[str, list[dict]] = {"ours": [], "trl": []}
    loads = []
    for r in range(args.rounds):
        for side, conn in (("ours", ours_conn), ("trl", trl_conn)):
            conn.send("go")
            row = {"round": r + 1, "load_1min": os.getloadavg()[0], **conn.recv()}
            row["per_1k_tokens"] = {k: row[k] / max(row["agent_tokens"], 1) * 1000 for k in ("seconds", "cpu_seconds")}
            rows[side].append(row)
            loads.append(row["load_1min"])
            print(f"round {r + 1} {side:4s}: {row['seconds']:6.1f} s ({row['cpu_seconds']:6.1f} CPU s, rollout "
                  f"{row['rollout_seconds']:5.1f} s)  {row['agent_tokens']:4d} agent tokens  reward "
                  f"{row['reward']:.3f}  load {row['load_1min']:.1f}", flush=True)  # fmt: skip
    ours_conn.send("stop")
    trl_conn.send("stop")
    for process in (ours, trl):
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()
    return rows


def side_summary(rows: list[dict]) -> dict[str, float]:
    measured = rows[1:] or rows  # round 1 warms up
    tokens = sum(r["agent_tokens"] for r in measured)
    mean = statistics.fmean
    return {
        "seconds_per_update": mean(r["seconds"] for r in measured),
        "cpu_seconds_per_update": mean(r["cpu_seconds"] for r in measured),
        "rollout_seconds_per_update": mean(r["rollout_seconds"] for r in measured),
        "seconds_per_1k_agent_tokens": 1000 * sum(r["seconds"] for r in measured) / max(tokens, 1),
        "cpu_seconds_per_1k_agent_tokens": 1000 * sum(r["cpu_seconds"] for r in measured) / max(tokens, 1),
        "agent_tokens_per_update": tokens / len(measured),
        "mean_reward": mean(r["reward"] for r in rows),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in rows),
    }


def main() -> None:
    args = parse_args()
    if not (args.model_dir / "config.json").is_file():
        process = mp.get_context("spawn").Process(target=prepare_model, args=(args,))
        process.start()
        process.join()
        if process.exitcode:
            raise SystemExit(f"preparing the SFT'd model failed (exit code {process.exitcode})")
    started = time.perf_counter()
    rows = run_rounds(args)
    ours, trl = side_summary(rows["ours"]), side_summary(rows["trl"])
    ratio = ours["seconds_per_update"] / trl["seconds_per_update"]
    ratios = {k: ours[k] / trl[k] for k in ours if k.endswith(("per_update", "tokens")) and trl[k]}
    print(f"\n{'per update (rounds 2+)':32s} {'ours':>10s} {'TRL':>10s} {'ours/TRL':>9s}")
    for key in ratios:
        print(f"{key:32s} {ours[key]:10.2f} {trl[key]:10.2f} {ratios[key]:9.2f}")
    print(f"{'mean reward (all rounds)':32s} {ours['mean_reward']:10.3f} {trl['mean_reward']:10.3f}")
    print(f"ratio (ours / TRL seconds per update): {ratio:.2f} (goal <= 0.8)")
    import torch
    import transformers
    import trl as trl_package

    result = {
        "ratio": ratio,
        "ratios": ratios,
        "ours": ours,
        "trl": trl,
        "rounds": rows,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": time.perf_counter() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl_package.__version__,
            "threads": args.threads,
            "load_1min_mean": statistics.fmean(r["load_1min"] for side in rows.values() for r in side),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
