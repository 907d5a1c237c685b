"""Ray env workers: proxies that behave like in-process envs, crash isolation, and concurrent/overlapped rollouts."""

import os
import signal
import sys
import time

import gymnasium as gym
import pytest

import agentenv
from agentenv import TextEnv
from agentenv.chat_format import ChatFormat
from agentenv.errors import ConfigError, UnknownEnvError
from agentenv.models import tiny_model
from agentenv.policies import Sampling, TransformersPolicy, WalkthroughPolicy
from agentenv.rollout import play_episode, rollout

ray = pytest.importorskip("ray")
from agentenv.workers import EnvWorkerError, RayEnv, make_ray_envs  # noqa: E402

KEYDOOR = "AgentEnv/KeyDoor-s3k1d2-v0"


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


def greedy(tiny):
    model, tokenizer = tiny
    return TransformersPolicy(model, tokenizer, Sampling(max_new_tokens=8, temperature=0.0))


def tokens(trajectories):
    return [
        (t.seed, t.token_ids, t.loss_mask, t.turn_spans, t.turn_rewards, t.truncated, t.error) for t in trajectories
    ]


def test_reset_and_step_match_an_in_process_env():
    [remote] = make_ray_envs(KEYDOOR, 1, max_turns=8)
    local = agentenv.make(KEYDOOR, max_turns=8)
    assert isinstance(remote, gym.Env) and remote.spec == local.spec
    assert remote.observation_space == local.observation_space and remote.action_space == local.action_space
    for seed in (0, 7):
        assert remote.reset(seed=seed) == local.reset(seed=seed)
        assert remote.instructions == local.unwrapped.instructions
        assert remote.walkthrough() == local.unwrapped.walkthrough()
        for action in ["look", "go north", "take purple key", "\x00\x1b[2J", "", 42, "x" * 5000]:
            assert remote.step(action) == local.step(action)
    assert remote.reset(options={"task_id": "keydoor-s3k1d2-5"}) == local.reset(options={"task_id": "keydoor-s3k1d2-5"})
    remote.reset(seed=0)
    for _ in range(8):
        remote.step("look")
    with pytest.raises(gym.error.ResetNeeded):  # the env's own exception, with its own type
        remote.step("look")
    remote.close()


def test_scripted_policies_play_through_the_proxy():
    [remote] = make_ray_envs(KEYDOOR, 1)
    local = agentenv.make(KEYDOOR)
    episode = play_episode(remote, WalkthroughPolicy(), seed=3)
    assert episode == play_episode(local, WalkthroughPolicy(), seed=3) and episode.success
    remote.close()


def test_step_async_runs_many_envs_at_once_and_guards_its_protocol():
    envs = make_ray_envs(KEYDOOR, 3)
    refs = [env.reset_async(seed=i) for i, env in enumerate(envs)]
    assert [info["task_id"] for _, info in ray.get(refs)] == [f"keydoor-s3k1d2-{i}" for i in range(3)]
    assert [env.reset_wait()[1]["task_id"] for env in envs] == [f"keydoor-s3k1d2-{i}" for i in range(3)]
    for env in envs:
        env.step_async("look")
    with pytest.raises(gym.error.AlreadyPendingCallError):
        envs[0].step_async("look")
    assert all(env.step_wait()[4]["turn"] == 1 for env in envs)
    with pytest.raises(gym.error.NoAsyncCallError):
        envs[0].step_wait()
    for env in envs:
        env.close()


def test_close_is_idempotent_and_ends_the_worker():
    [env] = make_ray_envs(KEYDOOR, 1)
    actor = env.actor
    env.reset(seed=0)
    env.close()
    env.close()
    deadline = time.monotonic() + 30
    while True:  # ray.kill is asynchronous: a call sent at once may still run (and fail in the closed env) first
        try:
            ray.get(actor.step.remote("look"), timeout=30)
        except ray.exceptions.RayActorError:
            break
        except ray.exceptions.RayTaskError:
            pass
        assert time.monotonic() < deadline, "the worker still runs calls 30 s after close()"
        time.sleep(0.1)
    with pytest.raises(EnvWorkerError, match="closed"):
        env.reset(seed=0)
    assert "closed" in repr(env)


def test_bad_env_ids_and_kwargs_fail_at_once_with_the_envs_own_errors():
    with pytest.raises(UnknownEnvError, match="KeyDoor"):
        make_ray_envs("AgentEnv/KeyDor-s3k1d2-v0", 1)
    with pytest.raises(ConfigError, match="max_turns"):
        make_ray_envs(KEYDOOR, 2, max_turns=0)
    with pytest.raises(ConfigError, match="num_cpus_per_env"):
        make_ray_envs(KEYDOOR, 1, num_cpus_per_env=-1)


def test_workers_that_cannot_be_scheduled_fail_with_a_clear_message():
    with pytest.raises(EnvWorkerError, match="num_cpus_per_env"):
        make_ray_envs(KEYDOOR, 1, num_cpus_per_env=64, start_timeout_s=1)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'agentenv\[ray\]'"):
        make_ray_envs(KEYDOOR, 1)


def test_a_hung_worker_is_killed_after_its_timeout_and_reset_starts_a_fresh_one():
    def sleepy(**kwargs):  # nested, so it is pickled by value: workers need not import this test module
        import time

        class Sleepy(TextEnv):
            instructions = "Say anything."

            def _reset(self, task_seed, options):
                return "Hello.", {}

            def _step(self, action):
                if action == "sleep":
                    time.sleep(600)
                return "Go on.", 0.0, False, {}

        return Sleepy(**kwargs)

    [env] = make_ray_envs(sleepy, 1, timeout_s=1.0, max_turns=5)
    env.reset(seed=0)
    first = env.pid
    with pytest.raises(EnvWorkerError, match=r"did not answer step within 1\.0s"):
        env.step("sleep")
    with pytest.raises(EnvWorkerError, match="call reset"):
        env.step("look")
    assert env.reset(seed=1)[0] == "Hello." and env.pid != first
    assert env.step("look")[0] == "Go on."
    env.close()


def test_rollout_with_ray_envs_equals_rollout_with_in_process_envs(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    local = [agentenv.make(KEYDOOR, max_turns=3) for _ in range(2)]
    remote = make_ray_envs(KEYDOOR, 2, max_turns=3)
    expected = rollout(local, greedy(tiny), fmt, range(5))
    assert tokens(rollout(remote, greedy(tiny), fmt, range(5))) == tokens(expected)
    assert tokens(rollout(remote, greedy(tiny), fmt, range(5), overlap=True)) == tokens(expected)
    assert not any(t.error for t in expected) and [t.seed for t in expected] == list(range(5))
    for env in remote:
        env.close()


class KillsAWorker:
    """Wraps a policy; at its ``at``-th generation call, kills the worker process of ``env`` (as a crash would)."""

    def __init__(self, policy, env: RayEnv, at: int):
        self.policy, self.env, self.at, self.calls = policy, env, at, 0

    def generate(self, prompts, sampling=None):
        self.calls += 1
        if self.calls == self.at:
            os.kill(self.env.pid, signal.SIGKILL)
        return self.policy.generate(prompts)


def test_a_killed_worker_fails_its_episode_and_the_batch_goes_on(tiny):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer)
    expected = rollout([agentenv.make(KEYDOOR, max_turns=3) for _ in range(2)], greedy(tiny), fmt, range(4))
    remote = make_ray_envs(KEYDOOR, 2, max_turns=3)
    first = remote[0].pid
    got = rollout(remote, KillsAWorker(greedy(tiny), remote[0], at=2), fmt, range(4))
    assert [t.seed for t in got] == [0, 1, 2, 3]
    [crashed] = [t for t in got if t.error]
    assert crashed.seed == 0 and "env step failed" in crashed.error and "died" in crashed.error
    assert len(crashed.turns) == 1  # the turn whose step the crash lost is not recorded
    assert tokens(got[1:]) == tokens(expected[1:])  # the rest of the batch, including later episodes on that slot
    assert remote[0].pid != first  # the next episode on the crashed slot got a fresh worker
    for env in remote:
        env.close()


class Crashes(TextEnv):
    instructions = "Say anything."

    def _reset(self, task_seed, options):
        self.crash_at = task_seed % 3
        return f"Hello {task_seed}.", {}

    def _step(self, action):
        if self.turn > self.crash_at:
            raise RuntimeError("the env broke")
        return f"Go on ({self.turn}).", 0.5, False, {}

    def _step_invalid(self, reason):  # the tiny model's turns are often unreadable: crash on those too
        return self._step(reason)


@pytest.mark.parametrize("env", ["keydoor", "crashes"])
def test_concurrent_and_overlapped_rollouts_equal_the_sequential_one(tiny, env):
    _, tokenizer = tiny
    fmt = ChatFormat(tokenizer)

    def envs(n):
        if env == "crashes":
            return [Crashes(max_turns=4) for _ in range(n)]
        return [agentenv.make(KEYDOOR, max_turns=3) for _ in range(n)]

    ended = []
    expected = rollout(envs(3), greedy(tiny), fmt, range(7), record_prompts=True)
    for options in ({"concurrent_env_steps": True}, {"overlap": True}, {"overlap": True, "concurrent_env_steps": True}):
        got = rollout(envs(3), greedy(tiny), fmt, range(7), record_prompts=True, on_episode=ended.append, **options)
        assert tokens(got) == tokens(expected), options
        assert [t.prompts for t in got] == [t.prompts for t in expected]
    assert len(ended) == 3 * 7
    if env == "crashes":
        assert sum(bool(t.error) for t in expected) == 7 and all("the env broke" in t.error for t in expected)
