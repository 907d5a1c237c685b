"""Advantage estimators by name: ``rl.algorithm`` in a recipe is a key of this registry.

An estimator turns one iteration's rollout into per-token advantages (and, for a critic, value targets). Each one
lives in its own module here and registers itself::

    from agentenv.policies.estimators import EstimatorInputs, register_estimator

    @register_estimator("my_pg", min_group_size=2)
    def my_pg(inputs: EstimatorInputs) -> dict:
        import torch  # estimator modules import torch inside the function: the registry stays torch-free
        ...
        return {"advantages": per_token}  # (batch, positions), 0 off inputs.mask

A new estimator is one file: a module of this package named in :data:`BUILTIN`, or a third party's module named by
an entry point in the ``agentenv.estimators`` group (loading it registers it). The registry imports no torch, so
validating a recipe (:class:`~agentenv.policies.rl_config.RLConfig`) is instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentenv.errors import ConfigError, check_choice

#: The estimators this package ships, one module each.
BUILTIN = ("ppo", "grpo", "rloo", "reinforce_pp")
ENTRY_POINT_GROUP = "agentenv.estimators"


@dataclass(frozen=True)
class EstimatorInputs:
    """What an estimator reads. Tensors are ``(batch, positions)`` in target space (see
    :mod:`agentenv.policies.advantages`) unless noted."""

    rewards: Any  # each turn's reward on its last token; with kl_in='reward', minus kl_coef * KL on every agent token
    returns: Any  # (batch,) each episode's return (KL-penalised the same way)
    mask: Any  # 1 on the agent's tokens
    values: Any  # the critic's values before the update (zeros unless the estimator has a critic)
    group_ids: Sequence[Any]  # the task group of each row (GRPO/RLOO baselines)
    config: Any  # the RLConfig
    whiten: Callable[[Any, Any, float], Any]  # (values, mask, eps) -> normalised over every process's agent tokens
    num_processes: int = 1


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: ``fn(inputs) -> {"advantages": ..., ["returns": critic targets]}``."""

    name: str
    fn: Callable[[EstimatorInputs], dict[str, Any]]
    min_group_size: int = 1  # episodes per task group it needs (2 for group baselines)
    critic: bool = False  # trains a value head; its "returns" are the value targets

    def __call__(self, inputs: EstimatorInputs) -> dict[str, Any]:
        return self.fn(inputs)


_REGISTRY: dict[str, Estimator] = {}
_loaded = False


def register_estimator(
    name: str, *, min_group_size: int = 1, critic: bool = False
) -> Callable[[Callable[[EstimatorInputs], dict[str, Any]]], Callable[[EstimatorInputs], dict[str, Any]]]:
    """Decorator: registers ``fn`` as the estimator ``name`` (a second registration of a name replaces it)."""
    if not name.isidentifier():
        raise ConfigError(f"estimator name {name!r} must be an identifier, like 'grpo' or 'my_pg'")

    def wrap(fn: Callable[[EstimatorInputs], dict[str, Any]]) -> Callable[[EstimatorInputs], dict[str, Any]]:
        _REGISTRY[name] = Estimator(name, fn, min_group_size, critic)
        return fn

    return wrap


def _load() -> None:
    """Imports the built-in estimator modules and the plugins' entry points, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        importlib.import_module(f"{__name__}.{name}")
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not hide the built-in estimators
            import warnings

            warnings.warn(f"estimator plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)


def estimator_names() -> tuple[str, ...]:
    """Every registered estimator's name, built-ins first."""
    _load()
    return tuple(_REGISTRY)


def get_estimator(name: str, field: str = "algorithm") -> Estimator:
    """The estimator ``name``; a :class:`ConfigError` naming ``field`` and the choices if there is none."""
    _load()
    check_choice(field, name, _REGISTRY)
    return _REGISTRY[name]
