"""AgentEnv's environments live in Gymnasium's own registry, under the namespace ``AgentEnv``.

``agentenv.register`` is ``gymnasium.register`` plus a card (family, description, source) for ``agentenv list``.
Environment families — first-party ones included — are found through the entry-point group ``agentenv.envs``:
each entry point names a callable that registers its envs. They are loaded when ``agentenv`` is imported, so
``gym.make("agentenv:AgentEnv/<Name>-v0")`` works without a prior import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, find_highest_version, parse_env_id

from agentenv.errors import ConfigError, UnknownEnvError, closest, short_repr

NAMESPACE = "AgentEnv"
ENTRY_POINT_GROUP = "agentenv.envs"


@dataclass(frozen=True)
class EnvCard:
    """What ``agentenv list`` shows about a registered env."""

    id: str
    family: str
    description: str
    source: str  # the entry point (plugin) that registered it, or "" when registered by hand


_cards: dict[str, EnvCard] = {}
_loaded_plugins: set[str] = set()
_current_source = ""
#: Plugins whose entry point failed to load: name -> error. ``agentenv list`` reports them.
plugin_errors: dict[str, str] = {}


def register(
    id: str,
    entry_point: str | Callable[..., gym.Env],
    *,
    kwargs: dict[str, Any] | None = None,
    family: str = "",
    description: str = "",
    nondeterministic: bool = False,
    max_episode_steps: int | None = None,
) -> EnvSpec:
    """Register an env in Gymnasium's registry; ids without a namespace go under ``AgentEnv/``.

    Registering the same id again with the same entry point and kwargs is a no-op; with a different
    definition it is an error (two plugins fighting over one id should not silently replace each other).
    Give ``kwargs`` as JSON values (lists, not tuples), so that ``EnvSpec.from_json(spec.to_json())`` equals
    the spec.
    """
    env_id = id if "/" in id else f"{NAMESPACE}/{id}"
    parse_env_id(env_id)  # validates the id's syntax with Gymnasium's own message
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ConfigError(f"entry_point={entry_point!r} must look like 'package.module:ClassName'")
    kwargs = dict(kwargs or {})
    existing = gym.registry.get(env_id)
    if existing is not None:
        if existing.entry_point == entry_point and existing.kwargs == kwargs:
            return existing
        owner = _cards.get(env_id)
        raise ConfigError(
            f"env id {env_id!r} is already registered"
            + (f" by {owner.source!r}" if owner and owner.source else "")
            + "; choose another id or bump its version (-v1)"
        )
    gym.register(
        id=env_id,
        entry_point=entry_point,
        kwargs=kwargs,
        nondeterministic=nondeterministic,
        max_episode_steps=max_episode_steps,
    )
    _cards[env_id] = EnvCard(env_id, family, description, _current_source)
    return gym.spec(env_id)


def load_plugins() -> None:
    """Load every ``agentenv.envs`` entry point not loaded yet. A failing plugin warns; it never breaks import."""
    global _current_source
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded_plugins:
            continue
        _loaded_plugins.add(ep.name)
        _current_source = ep.name
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as e:  # a broken third-party plugin must not break `import agentenv`
            plugin_errors[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"agentenv plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)
        finally:
            _current_source = ""


def env_ids(namespace: str | None = NAMESPACE) -> list[str]:
    """Registered ids in ``namespace`` (all AgentEnv cards when it is the default), sorted."""
    ids = {i for i, s in gym.registry.items() if namespace is None or s.namespace == namespace}
    if namespace == NAMESPACE:
        ids |= set(_cards)
    return sorted(ids)


def card(env_id: str) -> EnvCard:
    env_id = resolve_id(env_id)
    return _cards.get(env_id) or EnvCard(env_id, "", "", "")


def resolve_id(env_id: str) -> str:
    """The registered id ``env_id`` refers to (importing a ``module:`` prefix, resolving a missing version).

    Raises :class:`UnknownEnvError` listing the closest registered ids.
    """
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        __import__(module)
    if env_id in gym.registry:
        return env_id
    try:
        ns, name, version = parse_env_id(env_id)
    except gym.error.Error:
        ns, name, version = None, env_id, None
    if version is None:
        latest = find_highest_version(ns, name)
        candidate = gym.envs.registration.get_env_id(ns, name, latest)
        if candidate in gym.registry:
            return candidate
    suggestions = closest(env_id, env_ids(), n=5) or closest(env_id, list(gym.registry), n=5)
    hint = f" Closest registered ids: {', '.join(suggestions)}." if suggestions else ""
    raise UnknownEnvError(f"No environment registered as {env_id!r}.{hint} Run `agentenv list` to see all.")


def make(id: str | EnvSpec, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with AgentEnv's errors: unknown ids list the closest registered ones."""
    render_mode = kwargs.get("render_mode")
    if render_mode is not None and not isinstance(render_mode, str):  # gym.make reads it before the env can check
        raise ConfigError(f"render_mode={short_repr(render_mode)} must be a str or None")
    return gym.make(resolve_id(id) if isinstance(id, str) else id, **kwargs)


def make_vec(id: str | EnvSpec, num_envs: int = 1, vectorization_mode: str | None = None, **kwargs: Any):
    """``gymnasium.make_vec`` with AgentEnv's errors; ``vectorization_mode`` is ``"sync"`` or ``"async"``."""
    return gym.make_vec(
        resolve_id(id) if isinstance(id, str) else id,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        **kwargs,
    )


def spec(id: str) -> EnvSpec:
    return gym.spec(resolve_id(id))


# ---- multi-agent games (PettingZoo) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MultiEnvSpec:
    """A registered multi-agent game: ``entry_point`` names a PettingZoo ``AECEnv`` or ``ParallelEnv`` class (or a
    factory returning one), called with ``kwargs`` updated by ``make_multi``'s."""

    id: str
    entry_point: str | Callable[..., Any]
    kwargs: dict[str, Any]
    family: str = ""
    description: str = ""
    source: str = ""


_multi_specs: dict[str, MultiEnvSpec] = {}


def register_multi(
    id: str,
    entry_point: str | Callable[..., Any],
    *,
    kwargs: dict[str, Any] | None = None,
    family: str = "",
    description: str = "",
) -> MultiEnvSpec:
    """Register a multi-agent game for :func:`make_multi`; ids without a namespace go under ``AgentEnv/``.

    Multi-agent games are not Gymnasium envs, so they live in their own table, with the same id syntax and the same
    rule against two definitions of one id.
    """
    env_id = id if "/" in id else f"{NAMESPACE}/{id}"
    parse_env_id(env_id)
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ConfigError(f"entry_point={entry_point!r} must look like 'package.module:ClassName'")
    new = MultiEnvSpec(env_id, entry_point, dict(kwargs or {}), family, description, _current_source)
    existing = _multi_specs.get(env_id)
    if existing is not None:
        if (existing.entry_point, existing.kwargs) == (new.entry_point, new.kwargs):
            return existing
        raise ConfigError(
            f"game id {env_id!r} is already registered"
            + (f" by {existing.source!r}" if existing.source else "")
            + "; choose another id or bump its version (-v1)"
        )
    _multi_specs[env_id] = new
    return new


def list_multi() -> list[str]:
    """The registered multi-agent game ids, sorted."""
    return sorted(_multi_specs)


def multi_spec(id: str) -> MultiEnvSpec:
    """The spec registered as ``id`` (the namespace may be left out); unknown ids list the closest ones."""
    env_id = id if "/" in id else f"{NAMESPACE}/{id}"
    found = _multi_specs.get(env_id)
    if found is not None:
        return found
    suggestions = closest(env_id, list(_multi_specs), n=5)
    hint = f" Closest registered games: {', '.join(suggestions)}." if suggestions else ""
    if env_id in gym.registry:
        hint += " It is a single-agent env: use agentenv.make."
    raise UnknownEnvError(
        f"No multi-agent game registered as {short_repr(id)}.{hint} agentenv.list_multi() lists them."
    )


def make_multi(id: str, *, parallel: bool = False, **kwargs: Any) -> Any:
    """A new PettingZoo env of the game registered as ``id``: its AEC API, or with ``parallel=True`` its Parallel API.

    Simultaneous games are ``ParallelEnv`` classes: their AEC view is PettingZoo's ``parallel_to_aec``. Turn-based
    games have no Parallel view, and ``parallel=True`` is refused for them.
    """
    if not isinstance(parallel, bool):
        raise ConfigError(f"parallel={short_repr(parallel)} must be a bool")
    spec = multi_spec(id)
    try:
        from pettingzoo import AECEnv, ParallelEnv
        from pettingzoo.utils.conversions import parallel_to_aec
    except ImportError as e:
        raise ImportError(
            f"Multi-agent games need the 'games' extra ({e.name} is missing): pip install 'agentenv[games]'"
        ) from e
    factory = spec.entry_point
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(__import__(module, fromlist=[attr]), attr)
    env = factory(**{**spec.kwargs, **kwargs})
    if isinstance(env, ParallelEnv):
        return env if parallel else parallel_to_aec(env)
    if not isinstance(env, AECEnv):
        raise ConfigError(
            f"{spec.id}: entry point {spec.entry_point!r} made a {type(env).__name__}, not a PettingZoo env"
        )
    if parallel:
        raise ConfigError(f"parallel=True: {spec.id} is turn-based (AEC only); leave parallel=False")
    return env


def multi_api(env: Any) -> str:
    """Which of PettingZoo's APIs a game made by :func:`make_multi` is native to: ``"parallel"`` for a simultaneous
    game (a ``ParallelEnv``, or its AEC view), ``"AEC"`` for a turn-based one."""
    from pettingzoo import ParallelEnv

    return "parallel" if isinstance(env.unwrapped, ParallelEnv) else "AEC"
