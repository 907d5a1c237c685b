"""Env workers in other processes, behind the ``gym.Env`` interface: Ray actors.

:func:`make_ray_envs` starts ``n`` Ray actors, each holding one env built by ``agentenv.make(env_id, **kwargs)``
in its own process (on this machine, or across a cluster given its address), and returns :class:`RayEnv` proxies
that :func:`agentenv.rollout.rollout` and :func:`~agentenv.rollout.play_episode` use like local envs.

``step_async``/``step_wait`` (and ``reset_async``/``reset_wait``) send a call and collect its answer later, so many
envs step at once; ``rollout`` uses them whenever an env has them. A worker that dies (a crash, an OOM kill, a lost
node) or does not answer within ``timeout_s`` raises :class:`EnvWorkerError` from the call in flight, which fails
only that episode; the next ``reset`` starts a fresh worker, so the rest of a batch goes on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from agentenv.errors import ConfigError, check_range

EnvMaker = str | EnvSpec | Callable[..., gym.Env]


class EnvWorkerError(RuntimeError):
    """An env worker process died, hung past its timeout, or could not be started."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("Ray env workers need the 'ray' extra: pip install 'agentenv[ray]'") from e
    return ray


class _EnvWorker:
    """The actor: one env in a worker process. Every call answers plain data (no env objects cross processes)."""

    def __init__(self) -> None:
        self.env: gym.Env | None = None

    def start(self, make_env: EnvSpec | Callable[..., gym.Env], kwargs: dict[str, Any]) -> dict[str, Any]:
        env = gym.make(make_env, **kwargs) if isinstance(make_env, EnvSpec) else make_env(**kwargs)
        self.env = env
        return {
            "spec": env.spec,
            "observation_space": env.observation_space,
            "action_space": env.action_space,
            "metadata": dict(env.metadata),
            "render_mode": env.render_mode,
            "instructions": getattr(env.unwrapped, "instructions", ""),
            "pid": os.getpid(),
        }

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def call(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        attr = self.env.get_wrapper_attr(name)
        return attr(*args, **kwargs) if callable(attr) else attr

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


_actor_class: Any = None


def _worker_class() -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = _import_ray().remote(_EnvWorker)
    return _actor_class


class RayEnv(gym.Env):
    """A ``gym.Env`` whose env lives in a Ray actor. Build with :func:`make_ray_envs`.

    ``reset``/``step`` block; ``reset_async``/``step_async`` send the call and return its Ray object ref, and
    ``reset_wait``/``step_wait`` return its result (one call in flight per env). An exception raised by the env
    is raised again here with its own type; a dead or hung worker raises :class:`EnvWorkerError`. ``reset`` after
    a worker died starts a fresh one (and retries once if the worker dies during that reset). ``call(name, ...)``
    calls any env method (``walkthrough``, ``admissible_commands`` are provided), so scripted policies work too.
    """

    def __init__(
        self,
        make_env: EnvSpec | Callable[..., gym.Env],
        kwargs: dict[str, Any],
        actor_options: dict[str, Any],
        timeout_s: float | None,
        actor: Any,
        description: dict[str, Any],
        start_timeout_s: float = 120.0,
    ):
        self._make_env, self._kwargs, self._actor_options, self.timeout_s = make_env, kwargs, actor_options, timeout_s
        self.start_timeout_s = start_timeout_s
        self._actor = actor
        self._pending: tuple[str, Any, tuple] | None = None  # (method, object ref, args to resend a reset)
        self._dead = self._closed = False
        self._describe(description)

    def _describe(self, description: dict[str, Any]) -> None:
        self.spec = description["spec"]
        self.observation_space = description["observation_space"]
        self.action_space = description["action_space"]
        self.metadata = description["metadata"]
        self.render_mode = description["render_mode"]
        self._instructions: str | None = description["instructions"]
        self.pid: int = description["pid"]  # the worker's process id (on its node)

    @property
    def actor(self) -> Any:
        """The Ray actor handle of the current worker."""
        return self._actor

    @property
    def instructions(self) -> str:
        """The env's current system prompt (from the last reset's ``info`` when there, else asked of the worker)."""
        if self._instructions is None:
            self._instructions = self.call("instructions")
        return self._instructions

    @property
    def name(self) -> str:
        return self.spec.id if self.spec is not None else getattr(self._make_env, "__name__", "env")

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EnvWorkerError(f"{self.name}: this Ray env is closed")

    def _restart(self) -> None:
        ray = _import_ray()
        ray.kill(self._actor)
        self._actor = _worker_class().options(**self._actor_options).remote()
        # a fresh worker process starts in seconds: it gets the start timeout, not the per-call one
        started = self._actor.start.remote(self._make_env, self._kwargs)
        self._describe(self._get(started, "start", timeout=self.start_timeout_s))
        self._dead = False

    def _get(self, ref: Any, what: str, timeout: float | None = None) -> Any:
        """The result of a call: the env's own exception re-raised, a dead or hung worker as EnvWorkerError."""
        ray = _import_ray()
        timeout = self.timeout_s if timeout is None else timeout
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.RayTaskError as e:
            raise e.cause from e
        except ray.exceptions.GetTimeoutError:
            self._dead = True
            ray.kill(self._actor)
            raise EnvWorkerError(
                f"{self.name}: env worker (pid {self.pid}) did not answer {what} within {timeout}s; killed it"
            ) from None
        except ray.exceptions.RayActorError as e:
            self._dead = True
            lines = str(e).strip().splitlines()
            reason = lines[-1].split(". ", 1)[0].rstrip(".") if lines else type(e).__name__  # Ray's first sentence
            raise EnvWorkerError(f"{self.name}: env worker (pid {self.pid}) died during {what}: {reason}") from e

    def close(self) -> None:
        """Close the env and end its worker. Safe to call any number of times."""
        if self._closed:
            return
        self._closed, self._pending = True, None
        ray = _import_ray()
        if not self._dead:
            with contextlib.suppress(Exception):  # a dead or stuck worker is killed below all the same
                ray.get(self._actor.close.remote(), timeout=10)
        ray.kill(self._actor)
        self._dead = True

    # ---- the Gymnasium API, split in send and wait ----------------------------------------------------------------
    def reset_async(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Send ``reset``; returns its object ref. Drops the answer of any call still in flight."""
        self._check_open()
        if self._dead:
            self._restart()
        self._pending = ("reset", self._actor.reset.remote(seed, options), (seed, options))
        return self._pending[1]

    def reset_wait(self) -> tuple[Any, dict[str, Any]]:
        _, ref, (seed, options) = self._take("reset")
        try:
            observation, info = self._get(ref, "reset")
        except EnvWorkerError:
            if not self._dead or self._closed:
                raise
            self._restart()  # a worker found dead at a reset costs no episode: try once on a fresh one
            observation, info = self._get(self._actor.reset.remote(seed, options), "reset")
        self._instructions = info.get("instructions") if isinstance(info, dict) else None
        return observation, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def step_async(self, action: Any) -> Any:
        """Send ``step(action)``; returns its object ref."""
        self._check_open()
        if self._pending is not None:
            raise gym.error.AlreadyPendingCallError(
                f"{self.name}: a {self._pending[0]} is in flight; call {self._pending[0]}_wait() first",
                self._pending[0],
            )
        if self._dead:
            raise EnvWorkerError(f"{self.name}: the env worker died; call reset() to start a fresh one")
        self._pending = ("step", self._actor.step.remote(action), ())
        return self._pending[1]

    def step_wait(self) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        _, ref, _ = self._take("step")
        return self._get(ref, "step")

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.step_async(action)
        return self.step_wait()

    def _take(self, method: str) -> tuple[str, Any, tuple]:
        self._check_open()
        if self._pending is None or self._pending[0] != method:
            raise gym.error.NoAsyncCallError(f"{self.name}: no {method} in flight; call {method}_async() first", method)
        pending, self._pending = self._pending, None
        return pending

    # ---- the env's other methods --------------------------------------------------------------------------------
    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the env's method ``name`` in the worker (or read its attribute ``name``) and return the result."""
        self._check_open()
        if self._pending is not None:
            raise gym.error.AlreadyPendingCallError(f"{self.name}: a {self._pending[0]} is in flight", self._pending[0])
        if self._dead:
            raise EnvWorkerError(f"{self.name}: the env worker died; call reset() to start a fresh one")
        return self._get(self._actor.call.remote(name, args, kwargs), name)

    def render(self) -> Any:
        return self.call("render")

    def walkthrough(self) -> list[str] | None:
        return self.call("walkthrough")

    def admissible_commands(self) -> list[str] | None:
        return self.call("admissible_commands")

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("dead" if self._dead else f"pid {self.pid}")
        return f"<RayEnv {self.name} ({state})>"

    __str__ = __repr__


def make_ray_envs(
    env_id: EnvMaker,
    n: int,
    *,
    address: str | None = None,
    num_cpus_per_env: float = 0.25,
    timeout_s: float | None = None,
    start_timeout_s: float = 120.0,
    actor_options: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> list[RayEnv]:
    """Start ``n`` Ray actors each running ``agentenv.make(env_id, **env_kwargs)``; returns their proxies.

    ``env_id`` may also be an ``EnvSpec`` or a picklable callable returning an env (called with ``env_kwargs``).
    Ray is initialised if it is not yet: locally when ``address`` is ``None`` (or from ``RAY_ADDRESS``), else by
    connecting to the cluster at ``address`` (e.g. ``"ray://head:10001"`` or ``"auto"``); a session already
    initialised is used as it is. Each worker reserves ``num_cpus_per_env`` CPUs for Ray's scheduler (text envs
    are light; raise it on a cluster to spread workers across nodes); ``actor_options`` go to
    ``ActorClass.options`` (e.g. ``runtime_env``, ``scheduling_strategy``). ``timeout_s`` bounds each reset and
    step (a hung worker is killed and its episode fails). Raises the env's own error if it cannot be built, and
    :class:`EnvWorkerError` if the workers cannot all start within ``start_timeout_s`` (e.g. too few CPUs).
    """
    ray = _import_ray()
    check_range("n", n, 1, integer=True)
    check_range("num_cpus_per_env", num_cpus_per_env, 0)
    if timeout_s is not None:
        check_range("timeout_s", timeout_s, 0.001)
    if isinstance(env_id, str):
        from agentenv.registry import spec

        make_env: EnvSpec | Callable[..., gym.Env] = spec(env_id)  # unknown ids fail here, with suggestions
    elif isinstance(env_id, EnvSpec) or callable(env_id):
        make_env = env_id
    else:
        raise ConfigError(f"env_id={env_id!r} must be an env id, an EnvSpec or a callable returning an env")
    if not ray.is_initialized():
        local = address is None and not os.environ.get("RAY_ADDRESS")
        ray.init(address=address, **({"include_dashboard": False} if local else {}))
    options = {"num_cpus": num_cpus_per_env, **(actor_options or {})}
    actors = [_worker_class().options(**options).remote() for _ in range(n)]
    refs = [actor.start.remote(make_env, env_kwargs) for actor in actors]
    try:
        descriptions = ray.get(refs, timeout=start_timeout_s)
    except Exception as e:
        for actor in actors:
            ray.kill(actor)
        if isinstance(e, ray.exceptions.RayTaskError):
            raise e.cause from e
        if isinstance(e, ray.exceptions.GetTimeoutError):
            raise EnvWorkerError(
                f"{n} env workers did not all start within {start_timeout_s}s. Each asks for "
                f"num_cpus={num_cpus_per_env}; the Ray cluster has {ray.cluster_resources().get('CPU', 0)} CPUs. "
                "Lower num_cpus_per_env, start fewer envs or add nodes."
            ) from None
        raise EnvWorkerError(f"env workers could not start: {e}") from e
    return [
        RayEnv(make_env, dict(env_kwargs), options, timeout_s, actor, description, start_timeout_s)
        for actor, description in zip(actors, descriptions, strict=True)
    ]
