"""Training memory with and without gradient checkpointing (``model.gradient_checkpointing`` in a recipe).

One training step of the default model (SmolLM2-135M-Instruct, fp32): the agent forward (hidden states of every
position, the language-model head at the agent tokens), a policy-gradient loss, backward, an AdamW step. One
micro-batch of ``--rows`` rows of ``L`` tokens each, the second half of each row agent tokens, as in a whole-game
RL micro-batch. Each (length, mode) runs in its own process, so the peak resident set (``ru_maxrss``) is that
step's alone; baseline: checkpointing off, measured in the same run. Also checks that both modes give the same
gradients bit for bit (a SHA-256 of every gradient's bytes).

Usage: python benchmarks/training_memory.py [--lengths 256 512 1024] [--rows 4] [--threads 1]
(writes benchmarks/results/training_memory.json). Seconds are 1-thread figures; they vary with what else runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "training_memory.json"

CHILD = r"""
import hashlib, json, resource, sys, time
import torch
from agentenv.models import enable_gradient_checkpointing, load_model
from agentenv.policies.loss import agent_forward
from agentenv.policies.rl import collate
from agentenv.rollout import Trajectory

checkpointing, length, rows, threads = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model, tokenizer = load_model("default", num_threads=threads)
if checkpointing:
    enable_gradient_checkpointing(model)
ids = torch.randint(5, 1000, (rows, length), generator=torch.Generator().manual_seed(0)).tolist()
half = length // 2
mask = [0] * half + [1] * (length - half)
rows_ = [Trajectory("", "bench", 0, "", "", "", None, token_ids=row, loss_mask=mask, turn_spans=[]) for row in ids]
batch = collate(rows_, tokenizer.pad_token_id)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
model.train()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
logprobs = agent_forward(model, batch)["logprobs"]
loss = -(logprobs * batch.mask).sum() / batch.mask.sum()
loss.backward()
digest = hashlib.sha256()
for p in model.parameters():
    digest.update(p.grad.numpy().tobytes())
optimizer.step()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_before_gib": before / 2**20, "peak_gib": peak / 2**20,
                  "grad_sha256": digest.hexdigest()}))
"""


def measure(checkpointing: bool, length: int, rows: int, threads: int) -> dict:
    args = [sys.executable, "-c", CHILD, str(int(checkpointing)), str(length), str(rows), str(threads)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the step failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cells = []
    print(f"{'tokens':>7} {'peak off GiB':>13} {'peak on GiB':>11} {'peak on/off':>12} {'s off':>7} {'s on':>7} "
          f"{'time on/off':>12} {'same grads':>11}")  # fmt: skip
    for length in args.lengths:
        off, on = (measure(c, length, args.rows, args.threads) for c in (False, True))
        cell = {"tokens": length, "rows": args.rows, "off": off, "on": on,
                "peak_ratio": on["peak_gib"] / off["peak_gib"], "time_ratio": on["seconds"] / off["seconds"],
                "same_gradients": on["grad_sha256"] == off["grad_sha256"]}  # fmt: skip
        cells.append(cell)
        print(f"{length:>7} {off['peak_gib']:>13.2f} {on['peak_gib']:>11.2f} {cell['peak_ratio']:>12.2f} "
              f"{off['seconds']:>7.1f} {on['seconds']:>7.1f} {cell['time_ratio']:>12.2f} "
              f"{cell['same_gradients']!s:>11}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "training_memory", "model": "default (SmolLM2-135M-Instruct, fp32)", "threads": args.threads,
        "rows_per_micro_batch": args.rows, "machine": platform.machine(), "python": platform.python_version(),
        "cells": cells,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
