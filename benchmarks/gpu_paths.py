"""The GPU paths of the transformers runner and the RL trainer: do they run on CUDA, and how fast against CPU.

Model: the default model's architecture (SmolLM2-135M: 30 layers, hidden 576) with its real tokenizer and
*random* weights (``--model-dir`` holds config + tokenizer files only): throughput depends on the shapes, not on
the weights, and the GPU machine cannot download or be sent the 0.5 GB checkpoint. Env: Key-Door (pure Python).

Measured, in one run on one machine:
1. rollout generation tokens/s: CPU batch 8 (baseline) vs CUDA bf16 at batch 1, 8 and 32;
2. one PPO iteration (16 episodes, collect + update): CPU fp32 (baseline) vs CUDA bf16.

Usage: python benchmarks/gpu_paths.py --model-dir DIR [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from agentenv.chat_format import ChatFormat
from agentenv.envs.keydoor.env import KeyDoorEnv
from agentenv.policies import Sampling, TransformersPolicy
from agentenv.policies.rl import RLConfig, RLTrainer
from agentenv.rollout import rollout

RESULTS = Path(__file__).parent / "results" / "gpu_paths.json"


def load(model_dir: str, device: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def envs(n: int) -> list[KeyDoorEnv]:
    return [KeyDoorEnv(size=3, nb_keys=1, nb_distractors=2, max_turns=4) for _ in range(n)]


def generation(model, tokenizer, batch: int, episodes: int, new_tokens: int) -> dict:
    policy = TransformersPolicy(
        model, tokenizer, Sampling(max_new_tokens=new_tokens, temperature=0.0), batch_size=batch
    )
    fmt = ChatFormat(tokenizer)
    rollout(envs(batch), policy, fmt, range(batch))  # warm-up (CUDA kernels, caches)
    policy.clear_cache()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trajectories = rollout(envs(batch), policy, fmt, range(episodes))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = sum(sum(t.loss_mask) for t in trajectories)
    errors = [t.error for t in trajectories if t.error]
    rate = tokens / seconds
    return {"batch": batch, "episodes": episodes, "tokens": tokens, "seconds": seconds, "tokens_per_s": rate,
            "errors": len(errors), "first_error": errors[0] if errors else ""}  # fmt: skip


def ppo_iteration(model, tokenizer, episodes: int) -> dict:
    config = RLConfig(algorithm="ppo", iterations=1, episodes=episodes, group_size=1, epochs=1, minibatches=2,
                      micro_batch_size=8, max_new_tokens=24, num_envs=8, lr=1e-5)  # fmt: skip
    trainer = RLTrainer(config, model, tokenizer, envs(config.num_envs), ChatFormat(tokenizer), seed=0)
    model.train()
    t0 = time.perf_counter()
    metrics = trainer.iteration()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    losses = ("pg_loss", "vf_loss", "grad_norm", "entropy")
    return {"episodes": episodes, "seconds": seconds, "loss_finite": all(finite[k] == finite[k] for k in losses),
            "metrics": {k: finite[k] for k in sorted(finite)[:12]}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark compares the GPU paths with the CPU")
    rows: list[dict] = []
    cpu_model, tokenizer = load(args.model_dir, "cpu", torch.float32)
    base = generation(cpu_model, tokenizer, 8, 16, args.new_tokens)
    rows.append({"what": "generate", "device": "cpu fp32", **base, "ratio": 1.0})
    gpu_model, _ = load(args.model_dir, "cuda", torch.bfloat16)
    for batch in (1, 8, 32):
        r = generation(gpu_model, tokenizer, batch, max(args.episodes, batch), args.new_tokens)
        rows.append({"what": "generate", "device": "cuda bf16", **r, "ratio": r["tokens_per_s"] / base["tokens_per_s"]})
    cpu_ppo = ppo_iteration(cpu_model, tokenizer, 16)
    rows.append({"what": "ppo iteration", "device": "cpu fp32", **cpu_ppo, "ratio": 1.0})
    del gpu_model
    gpu_train, _ = load(args.model_dir, "cuda", torch.bfloat16)
    gpu_ppo = ppo_iteration(gpu_train, tokenizer, 16)
    rows.append(
        {"what": "ppo iteration", "device": "cuda bf16", **gpu_ppo, "ratio": cpu_ppo["seconds"] / gpu_ppo["seconds"]}
    )
    print(f"{'what':<14} {'device':<10} {'batch':>5} {'tokens/s':>9} {'seconds':>8} {'ratio':>7}")
    for r in rows:
        tps = f"{r['tokens_per_s']:.0f}" if "tokens_per_s" in r else "-"
        batch = str(r.get("batch", "-"))
        print(f"{r['what']:<14} {r['device']:<10} {batch:>5} {tps:>9} {r['seconds']:8.2f} {r['ratio']:7.2f}x")
    meta = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads()}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
