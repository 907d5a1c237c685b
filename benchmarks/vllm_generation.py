"""vLLM generation vs transformers generation on CPU: tokens/s, one RL iteration of the demo recipe with each, the
log-prob gap between vLLM's bf16 sampler and the fp32 trainer, and truncated importance sampling (TIS) on and off.

Baseline: :class:`~agentenv.policies.TransformersPolicy` (fp32, prefix cache, batched). Compared:
:class:`~agentenv.policies.vllm.VLLMPolicy` (vLLM's CPU build, bf16, in-process engine, eager). Same model (the
offline default), same prompts, same seeds; torch at 1 thread for both (``OMP_NUM_THREADS=1``).

1. Generation alone: 16 prompts x 32 new tokens (sampled), tokens/s of each, and the ratio.
2. One RL iteration of ``recipes/demo.yaml``'s ``rl`` section (TextWorld, PPO) from the same weights and task seeds:
   with transformers generation, then with vLLM generation (the trainer syncs its weights into the engine), TIS
   off and on (``rl.tis_cap``); seconds, rollout seconds, generated tokens/s, the gap (mean |log p_vLLM - log
   p_trainer| per token, importance-ratio mean / std / max, share truncated) and how much TIS changes the update
   (cosine of the two weight updates).

Runs in ``.venv-vllm`` (``make test-vllm`` builds it): ``OMP_NUM_THREADS=1 .venv-vllm/bin/python
benchmarks/vllm_generation.py`` writes ``benchmarks/results/vllm_generation.json``. On a GPU machine with the ``gpu``
extra, ``python benchmarks/vllm_generation.py --device cuda`` runs the same comparison there (the trainer and the
transformers runner on the GPU, vLLM's CUDA engine beside them with sleep mode) and writes
``vllm_generation_cuda.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

import agentenv
from agentenv.chat_format import ChatFormat
from agentenv.models import load_model
from agentenv.policies import Sampling, TransformersPolicy
from agentenv.policies.rl import RLConfig, RLTrainer
from agentenv.recipes.config import load_recipe

RESULTS = Path(__file__).parent / "results" / "vllm_generation.json"
ROOT = Path(__file__).resolve().parents[1]


def generation(policy, tokenizer, prompts: int, tokens: int) -> dict:
    chat = ChatFormat(tokenizer)
    batch = [chat.start([{"role": "user", "content": f"Write a short story about the number {i}."}])
             for i in range(prompts)]  # fmt: skip
    sampling = Sampling(max_new_tokens=tokens, temperature=1.0, seed=0)
    policy.generate(batch[:2], Sampling(max_new_tokens=4, temperature=1.0, seed=0))  # warm-up
    t0 = time.perf_counter()
    out = policy.generate(batch, sampling)
    seconds = time.perf_counter() - t0
    generated = sum(len(g.token_ids) for g in out)
    return {"prompts": prompts, "generated_tokens": generated, "seconds": seconds, "tokens_per_s": generated / seconds}


def rl_iteration(base, tokenizer, recipe, policy, tis_cap: float | None) -> tuple[dict, dict]:
    """One iteration from ``base``'s weights; returns its metrics and the weight update (new - old)."""
    rl = {**{f: getattr(recipe.rl, f) for f in recipe.rl.__dataclass_fields__}, "tis_cap": tis_cap}
    config = RLConfig(**rl)
    model = copy.deepcopy(base)
    envs = [agentenv.make(recipe.env.id, **{**recipe.env.kwargs, "split": "train"}) for _ in range(config.num_envs)]
    trainer = RLTrainer(config, model, tokenizer, envs, ChatFormat(tokenizer), seed=recipe.seed,
                        env_id=recipe.env.id, policy=policy)  # fmt: skip
    metrics = trainer.iteration()
    for env in envs:
        env.close()
    delta = {k: (v - base.state_dict()[k]).contiguous() for k, v in model.state_dict().items()}
    keep = ("seconds", "rollout_seconds", "agent_tokens", "episodes", "success_rate", "mean_return", "pg_loss",
            "grad_norm", "logprob_gap", "is_ratio_mean", "is_ratio_std", "is_ratio_max", "tis_truncated")  # fmt: skip
    row = {k: metrics[k] for k in keep if k in metrics}
    row["rollout_tokens_per_s"] = metrics["agent_tokens"] / metrics["rollout_seconds"]
    return row, delta


def cosine(a: Path, b: Path) -> float | None:
    """Cosine of two saved weight updates, accumulated tensor by tensor in float64 (a float32 sum over 135M weights
    drifts; one concatenated float64 copy of each would cost 2 GB)."""
    from safetensors.torch import load_file

    x_all, y_all = load_file(a), load_file(b)
    dot = na = nb = 0.0
    for k, x in x_all.items():
        x, y = x.double().flatten(), y_all[k].double().flatten()
        dot, na, nb = dot + float(x @ y), na + float(x @ x), nb + float(y @ y)
    return dot / (na * nb) ** 0.5 if na and nb else None  # None: an update of zero (every advantage was 0)


PHASES = {"transformers": None, "vllm": None, "vllm_tis": 2.0}  # RL iterations: name -> tis_cap


def phase(name: str, args: argparse.Namespace, folder: Path) -> None:
    """One measurement in this process (its own memory: glibc keeps what a PPO update frees, so three iterations in
    one process reached 11-13 GB); writes ``folder/name.json`` (and the update, ``name.safetensors``)."""
    from safetensors.torch import save_file

    from agentenv.policies.vllm import VLLMPolicy

    recipe = load_recipe(args.recipe)
    base, tokenizer = load_model("default", device=args.device)
    result: dict = {}
    engine = None
    if name == "generation" or name.startswith("vllm"):
        t0 = time.perf_counter()
        engine = VLLMPolicy("default", max_model_len=recipe.rl.max_context_tokens + recipe.rl.max_new_tokens,
                            gpu_memory_utilization=0.3, enable_sleep_mode=args.device != "cpu")  # fmt: skip
        result["engine_start_seconds"] = time.perf_counter() - t0
    if name == "generation":
        runner = TransformersPolicy(base, tokenizer, batch_size=args.prompts)
        result["transformers"] = generation(runner, tokenizer, args.prompts, args.tokens)
        result["vllm"] = generation(engine, tokenizer, args.prompts, args.tokens)
    else:
        result, delta = rl_iteration(base, tokenizer, recipe, engine, PHASES[name])
        save_file(delta, str(folder / f"{name}.safetensors"))
        print(name, json.dumps(result), flush=True)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    (folder / f"{name}.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine with the gpu extra")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if args.phase:
        return phase(args.phase, args, Path(args.folder))
    out = RESULTS if args.device == "cpu" else RESULTS.with_name(f"vllm_generation_{args.device.split(':')[0]}.json")
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        folder = Path(tmp)
        for name in ("generation", *PHASES):
            command = [sys.executable, __file__, "--phase", name, "--folder", tmp, "--prompts", str(args.prompts),
                       "--tokens", str(args.tokens), "--recipe", args.recipe, "--device", args.device]  # fmt: skip
            subprocess.run(command, check=True)
        parts = {name: json.loads((folder / f"{name}.json").read_text()) for name in ("generation", *PHASES)}
        gen = parts.pop("generation")
        it: dict = dict(parts)
        it["tis_update_cosine"] = cosine(folder / "vllm.safetensors", folder / "vllm_tis.safetensors")
        it["vllm_vs_transformers_update_cosine"] = cosine(
            folder / "vllm.safetensors", folder / "transformers.safetensors"
        )
    results: dict = {"generation": {"transformers": gen["transformers"], "vllm": gen["vllm"]}, "rl_iteration": it}
    results["generation"]["vllm_over_transformers"] = gen["vllm"]["tokens_per_s"] / gen["transformers"]["tokens_per_s"]
    it["vllm_over_transformers_rollout_tokens_per_s"] = (
        it["vllm"]["rollout_tokens_per_s"] / it["transformers"]["rollout_tokens_per_s"]
    )
    it["vllm_over_transformers_seconds"] = it["vllm"]["seconds"] / it["transformers"]["seconds"]
    recipe = load_recipe(args.recipe)
    results["machine"] = {
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "device": args.device, "vllm_engine_start_seconds": gen["engine_start_seconds"],
        "peak_rss_gib": max(p["peak_rss_gib"] for p in (gen, *parts.values())),
        "load_average_1min_at_end": os.getloadavg()[0],  # other jobs on the machine slow both sides
        "note": "each measurement in its own process, one after another",
    }  # fmt: skip
    results["recipe"] = {"path": os.path.relpath(args.recipe, ROOT), "env": recipe.env.id, "rl": vars(recipe.rl)}
    print_table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {out}")


def print_table(results: dict) -> None:
    g, it = results["generation"], results["rl_iteration"]
    print(f"\ngeneration, {g['transformers']['prompts']} prompts (tokens/s, 1 thread)")
    for name in ("transformers", "vllm"):
        print(f"  {name:<14}{g[name]['tokens_per_s']:>10.1f}")
    print(f"  vllm / transformers: {g['vllm_over_transformers']:.2f}x")
    print("\none RL iteration of the demo recipe")
    print(f"  {'':<14}{'seconds':>9}{'rollout s':>11}{'tok/s':>8}{'gap':>8}{'ratio sd':>10}{'truncated':>11}")
    for name in ("transformers", "vllm", "vllm_tis"):
        r = it[name]
        gap = f"{r.get('logprob_gap', 0):>8.4f}{r.get('is_ratio_std', 0):>10.4f}{r.get('tis_truncated', 0):>11.4f}"
        print(f"  {name:<14}{r['seconds']:>9.1f}{r['rollout_seconds']:>11.1f}{r['rollout_tokens_per_s']:>8.1f}{gap}")
    print(f"  cosine(update without TIS, with TIS) = {it['tis_update_cosine']}")


if __name__ == "__main__":
    main()
