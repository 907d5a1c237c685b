"""The SWE env's pool of sandboxes opened ahead per library (envs/swe/pool.py), in the real bubblewrap sandbox on real
tasks: an episode never sees another's edits, nothing an agent writes (edit tools, ``echo >``, ``sed -i``, Python's
``open('w')``, ``rm``, ``chmod``) reaches the pristine tree or a ready sandbox, the pool stays out of the agent's
sight, pickled envs play on, and failures and closed pools raise clear errors."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import agentenv
from agentenv.envs.swe.sources import fetch_source
from agentenv.errors import ConfigError
from agentenv.sandbox import available_backends, reclaim_leftovers
from agentenv.tool_calls import tool_call_text

pytestmark = pytest.mark.skipif(
    available_backends().get("bubblewrap") is not None,
    reason=f"bubblewrap sandbox unavailable: {available_backends().get('bubblewrap')}",
)


@pytest.fixture(scope="module", autouse=True)
def every_source():
    """Every library's tree in the cache: the pool prepares only the libraries at hand (it downloads nothing)."""
    env = make()
    for library in sorted({t.repo for tasks in env.unwrapped.by_split.values() for t in tasks}):
        fetch_source(library)
    env.close()


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


def make(**kwargs):
    return agentenv.make("AgentEnv/SWE-Mutants-v0", **kwargs)


def digest(tree: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``tree``: relative path -> (sha256 of the bytes or 'dir'/'link', mode)."""
    found = {}
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(folder, name)
            status = path.lstat()
            if path.is_symlink():
                kind = "link:" + os.readlink(path)
            elif path.is_dir():
                kind = "dir"
            else:
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(tree).as_posix()] = (kind, status.st_mode)
    return found


def inodes(tree: Path) -> set[tuple[int, int]]:
    return {
        (s.st_dev, s.st_ino) for f, _, names in os.walk(tree) for s in (os.lstat(os.path.join(f, n)) for n in names)
    }


def expected_tree(env) -> dict[str, str]:
    """What a fresh episode's tree holds: relative path -> sha256, the pristine tree with the bug applied."""
    inner = env.unwrapped
    expected = {rel: kind for rel, (kind, _) in digest(inner.pristine).items()}
    for rel, text in inner.grader.buggy.items():
        expected[rel] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return expected


def source_files(env) -> list[str]:
    """The task's source files, the mutated one first."""
    inner = env.unwrapped
    mutated = inner.task.mutation["file"]
    others = sorted(p.relative_to(inner.pristine).as_posix() for p in inner.pristine.rglob("*.py"))
    return list(dict.fromkeys([mutated, *others]))


def write_every_way(env, files: list[str]) -> None:
    """Change the tree through every route an agent has, each on its own file, and check that it took."""
    first, second, third, fourth, fifth = files[:5]

    def step(action):
        observation, _, terminated, _, info = env.step(action)
        assert not terminated and not info["invalid_action"] and not observation.startswith("Error"), observation
        return observation

    step(call("insert", path=first, line=0, text="# AGENT-INSERT"))
    step(call("str_replace", path=first, old="# AGENT-INSERT", new="# AGENT-REPLACED"))
    step(call("create", path="agent_new_file.py", text="AGENT = 1\n"))
    shell = (
        f"echo AGENT-ECHO > {second} && echo AGENT-APPEND >> {third} && sed -i 's/^/# AGENT-SED /' {fourth} && "
        f"python -c \"open('{fifth}', 'w').write('AGENT-PYTHON')\" && rm -f PKG-INFO && chmod 600 {first} && "
        "mkdir -p agent_dir && echo x > agent_dir/f && echo ok"
    )
    assert step(call("bash", command=shell)).endswith("ok\n")
    box = env.unwrapped.box
    assert box.read_file(first).startswith("# AGENT-REPLACED")
    assert box.read_file(second) == "AGENT-ECHO\n" and box.read_file(fifth) == "AGENT-PYTHON"
    assert box.read_file(third).endswith("AGENT-APPEND\n") and box.read_file(fourth).startswith("# AGENT-SED ")
    assert not box.exists("PKG-INFO")


def test_no_route_an_agent_writes_through_reaches_the_pristine_tree_a_ready_sandbox_or_the_next_episode():
    env = make()
    try:
        env.reset(seed=0)
        inner = env.unwrapped
        pool = inner._pool
        assert pool is not None and pool.wait_ready(120)
        pristine = digest(inner.pristine)
        ready = {}
        for library in {t.repo for tasks in inner.by_split.values() for t in tasks}:
            expected = digest(fetch_source(library))
            for box in pool.ready_boxes(library):
                ready[id(box)] = (box, digest(box.workdir))
                assert ready[id(box)][1] == expected, library
        assert len(ready) == pool.ready_count() > 1
        workdir = inner.box.workdir
        assert expected_tree(env) == {rel: kind for rel, (kind, _) in digest(workdir).items()}
        assert not inodes(workdir) & inodes(inner.pristine)  # a copy: no inode (hard link) shared with the pristine
        write_every_way(env, source_files(env))
        assert digest(inner.pristine) == pristine
        for box, snapshot in ready.values():
            if not box.closed:
                assert digest(box.workdir) == snapshot
        env.reset(seed=0)  # the same task again: a fresh tree, none of the edits
        assert inner.box.workdir != workdir
        assert expected_tree(env) == {rel: kind for rel, (kind, _) in digest(inner.box.workdir).items()}
        assert digest(inner.pristine) == pristine
    finally:
        env.close()


def test_every_episode_gets_a_sandbox_of_its_own_and_the_old_ones_are_closed():
    env = make()
    try:
        seen, boxes = set(), []
        for seed in range(8):  # several libraries, the first task twice
            env.reset(seed=seed % 7)
            box = env.unwrapped.box
            assert box.workdir not in seen and all(box is not b for b in boxes)
            seen.add(box.workdir)
            boxes.append(box)
            env.step(call("bash", command="echo mine > mine.txt"))
        pool = env.unwrapped._pool
        assert pool.wait_ready(120)  # the thread closed the retired ones before refilling
        assert all(box.closed and not box.workdir.exists() for box in boxes[:-1])
        assert not boxes[-1].closed and env.unwrapped.box is boxes[-1]
        assert all(not box.exists("mine.txt") for box in pool.ready_boxes())
    finally:
        env.close()


def test_the_pool_and_the_answer_key_stay_out_of_the_agents_sight():
    env = make()
    try:
        env.reset(seed=0)
        inner = env.unwrapped
        assert inner._pool.wait_ready(120)
        hidden = [str(p) for box in inner._pool.ready_boxes() for p in (box.workdir, box.workdir.parent)]
        hidden += [str(inner.pristine), str(Path(agentenv.__file__).parent), str(inner.pristine.parent)]
        from agentenv.envs.swe.env import default_tasks_path

        hidden.append(str(default_tasks_path()))
        probe = "; ".join(f"test -e {p} && echo SEEN {p}" for p in hidden) + "; ls -A /tmp; echo done"
        observation, *_ = env.step(call("bash", command=probe))
        assert "SEEN" not in observation and observation.endswith("done\n"), observation
        assert not any(box.workdir.name in observation or box.workdir.parent.name in observation
                       for box in inner._pool.ready_boxes())  # fmt: skip
    finally:
        env.close()


def test_the_pool_refills_in_the_background_and_close_closes_every_sandbox():
    from agentenv.envs.swe.pool import PoolClosedError

    env = make(ready_trees=1)
    env.reset(seed=0)
    pool = env.unwrapped._pool
    libraries = {t.repo for tasks in env.unwrapped.by_split.values() for t in tasks}
    assert pool.per_library == 1 and pool.wait_ready(120)
    assert pool.ready_count() == len(libraries) and all(pool.ready_count(name) == 1 for name in libraries)
    library = env.unwrapped.task_for(1).repo
    before = pool.ready_boxes()
    env.reset(seed=1)
    assert env.unwrapped.box in before  # taken from the pool, not opened at reset
    assert pool.wait_ready(120) and pool.ready_count(library) == 1
    folders = [box.workdir.parent for box in pool.ready_boxes()] + [env.unwrapped.box.workdir.parent]
    env.close()
    assert pool.closed and not any(folder.exists() for folder in folders)
    with pytest.raises(PoolClosedError, match="closed"):
        pool.take(library)
    env.reset(seed=2)  # a closed env that resets again makes a new pool
    assert env.unwrapped._pool is not pool and not env.unwrapped._pool.closed
    env.close()


def test_ready_trees_zero_opens_at_reset_and_bad_values_are_refused():
    env = make(ready_trees=0)
    try:
        env.reset(seed=0)
        assert env.unwrapped._pool is None
        assert expected_tree(env) == {rel: kind for rel, (kind, _) in digest(env.unwrapped.box.workdir).items()}
        workdir = env.unwrapped.box.workdir
        env.reset(seed=1)
        assert not workdir.exists()  # closed at reset, without a pool
    finally:
        env.close()
    for bad in (-1, 17, 1.5):
        with pytest.raises(ConfigError, match="ready_trees"):
            make(ready_trees=bad)


def test_a_failed_opening_is_raised_where_the_sandbox_is_taken():
    from agentenv.envs.swe.env import _open_library_box
    from agentenv.envs.swe.pool import TreePool

    opener = functools.partial(_open_library_box, "bubblewrap", 30.0, 1024)
    pool = TreePool(opener, ["no-such-library"], per_library=1)
    try:
        assert pool.wait_ready(60)  # the thread tried once, then leaves it until a reset asks for it
        assert "no-such-library" in pool.failures["no-such-library"] and pool.ready_count() == 0
        with pytest.raises(ConfigError, match="no-such-library"):
            pool.take("no-such-library")
        assert pool.ready_count() == 0
    finally:
        pool.close()
    with pytest.raises(ConfigError, match="per_library"):
        TreePool(opener, ["toolz"], per_library=0)
    with pytest.raises(TypeError, match="does not pickle"):
        pickle.dumps(TreePool(opener, [], per_library=1))


def test_a_library_joins_the_pool_at_its_first_reset():
    from agentenv.envs.swe.env import _open_library_box
    from agentenv.envs.swe.pool import TreePool

    pool = TreePool(functools.partial(_open_library_box, "bubblewrap", 30.0, 1024), [], per_library=2)
    try:
        assert pool.wait_ready(60) and pool.ready_count() == 0
        box = pool.take("toolz")  # opened at once: none was ready
        assert box.exists("toolz/__init__.py") and not box.closed
        assert pool.wait_ready(120) and pool.ready_count("toolz") == 2 and box not in pool.ready_boxes()
        pool.retire(box)
        assert pool.wait_ready(120) and box.closed
    finally:
        pool.close()
    assert all(b.closed for b in [box])


def test_a_pickled_env_plays_on_with_its_edits_and_makes_its_own_pool():
    env = make()
    copy = None
    try:
        env.reset(seed=0)
        env.step(call("bash", command="echo AGENT > agent.txt"))
        copy = pickle.loads(pickle.dumps(env))
        assert copy.unwrapped._pool is None and copy.unwrapped.box.read_file("agent.txt") == "AGENT\n"
        assert copy.unwrapped.box.workdir != env.unwrapped.box.workdir
        copy.reset(seed=0)
        assert copy.unwrapped._pool is not None and copy.unwrapped._pool is not env.unwrapped._pool
        assert not copy.unwrapped.box.exists("agent.txt")
        assert env.unwrapped.box.read_file("agent.txt") == "AGENT\n"  # the original is untouched
    finally:
        if copy is not None:
            copy.close()
        env.close()


def test_a_killed_env_leaves_the_pristine_tree_whole_and_its_sandboxes_to_the_janitor(tmp_path):
    base = tmp_path / "tmp"
    base.mkdir()
    script = textwrap.dedent(
        """
        import time, warnings
        warnings.simplefilter("ignore")
        import agentenv
        env = agentenv.make("AgentEnv/SWE-Mutants-v0")
        env.reset(seed=0)
        env.unwrapped._pool.wait_ready(120)
        env.unwrapped.box.run("for f in $(find . -name '*.py'); do echo KILLED > $f; done")
        print(env.unwrapped.pristine, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TMPDIR": str(base)})  # fmt: skip
    try:
        pristine = Path(owner.stdout.readline().strip())
        before = digest(pristine)
        folders = sorted(p for p in base.iterdir() if p.name.startswith("agentenv-sandbox-"))
        assert len(folders) > 1  # the episode's and the pool's
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert digest(pristine) == before
        assert not any("KILLED" in p.read_text() for p in pristine.rglob("*.py"))
        removed = {item.path for item in reclaim_leftovers(base)}
        assert set(folders) <= removed and not any(p.exists() for p in folders)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
        reclaim_leftovers(base)


def test_file_times_do_not_point_at_the_bug():
    """The files the bug changed keep their pristine mtimes, and no ctime singles them out as the newest."""
    env = make()
    try:
        for seed in range(3):
            env.reset(seed=seed)
            inner = env.unwrapped
            workdir, changed = inner.box.workdir, set(inner.grader.buggy)
            entries = [Path(f, n) for f, dirs, files in os.walk(workdir) for n in dirs + files]
            for path in entries:
                relative = path.relative_to(workdir).as_posix()
                assert path.lstat().st_mtime_ns == (inner.pristine / relative).lstat().st_mtime_ns, relative
            newest = max(entries, key=lambda p: p.lstat().st_ctime_ns)
            later = [p for p in entries if p.lstat().st_ctime_ns > newest.lstat().st_ctime_ns - 1]
            assert later and {p.relative_to(workdir).as_posix() for p in later} != changed
    finally:
        env.close()
