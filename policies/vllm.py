"""A vLLM runner (the ``gpu`` extra): the offline engine in this process, token ids in and out, weights from a trainer.

Written against vLLM 0.33 (``pip install 'agentenv[gpu]'``; it pins ``torch==2.14.0`` and ``transformers<5.21``,
which the ``train`` extra admits — ``tests/test_packaging.py`` resolves the two together) and the calls TRL 1.16's
colocated vLLM mode makes. NOT YET RUN: no machine this project is tested on can install vLLM (the CPU machines have
no GPU; the GPU machines lent so far have no package index), so this runner is experimental until a GPU test run
lands. :class:`~agentenv.policies.TransformersPolicy` is the tested runner on CPU and GPU.

Token-exact like the transformers runner: prompts go in as token ids (``TokensPrompt``), the generated ids and
their sampling log-probabilities (``logprobs_mode="processed_logprobs"``: after temperature) come back as they were
sampled, so the rollout engine never re-encodes the agent's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agentenv.policies.turns import TurnByTurn
from agentenv.policy import GPU_EXTRA, Generation, Sampling


def _require_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"the vLLM runner needs vllm (GPU machines): {GPU_EXTRA}") from e
    return vllm


class VLLMPolicy(TurnByTurn):
    """Batched generation with vLLM's offline ``LLM`` engine (continuous batching, prefix caching).

    ``load_weights(model)`` copies a trainer's current weights into the engine (RL: after each update);
    ``sleep()`` / ``wake_up()`` free and restore its GPU memory around the trainer's update when
    ``enable_sleep_mode=True``. A :class:`~agentenv.policy.TokenPolicy` (``start``/``act`` play
    :func:`~agentenv.rollout.play_episode` turns).
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
        seed: int = 0,
        **engine: Any,
    ):
        vllm = _require_vllm()
        self.name = f"vllm:{model}"
        self.sampling = sampling or Sampling()
        self.enable_sleep_mode = enable_sleep_mode
        self.llm = vllm.LLM(
            model=model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
            enable_sleep_mode=enable_sleep_mode, enable_prefix_caching=True, seed=seed,
            logprobs_mode="processed_logprobs", **engine,
        )  # fmt: skip
        self.tokenizer = self.llm.get_tokenizer()
        self.batch_size = 0  # vLLM schedules the whole batch itself
        self._sleeping = False

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling | None = None) -> list[Generation]:
        vllm = _require_vllm()
        from vllm.inputs import TokensPrompt

        s = sampling or self.sampling
        if self._sleeping:
            self.wake_up()
        params = vllm.SamplingParams(
            max_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed, logprobs=0,
            stop_token_ids=[self.tokenizer.eos_token_id], skip_special_tokens=True,
        )  # fmt: skip
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [step[token].logprob for step, token in zip(completion.logprobs or [], ids, strict=False)]
            finish = "stop" if completion.finish_reason == "stop" else "length"
            generations.append(Generation(ids, logprobs or [0.0] * len(ids), finish, completion.text))
        return generations

    def load_weights(self, weights: Any) -> None:
        """Copy weights into the engine: a torch module (its ``named_parameters``) or ``(name, tensor)`` pairs."""
        named: Iterable[tuple[str, Any]] = (
            weights.named_parameters() if hasattr(weights, "named_parameters") else weights
        )
        if self._sleeping:
            self.llm.wake_up(tags=["weights"])
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, tensor in named:
            runner.load_weights([(name, tensor.detach())])
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights

    def sleep(self, level: int = 1) -> None:
        """Free the engine's GPU memory (level 1 keeps the weights in CPU memory, 2 discards them)."""
        if not self.enable_sleep_mode:
            raise RuntimeError("sleep() needs VLLMPolicy(..., enable_sleep_mode=True)")
        self.llm.sleep(level=level)
        self._sleeping = True

    def wake_up(self) -> None:
        if self._sleeping:
            self.llm.wake_up()
            self._sleeping = False
