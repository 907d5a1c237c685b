import atexit
import os
import shutil
import tempfile

# Games, converted models and other built things go to a fresh cache per test session (removed at exit) unless the
# caller chose one.
if "AGENTENV_CACHE" not in os.environ:
    os.environ["AGENTENV_CACHE"] = tempfile.mkdtemp(prefix="agentenv-test-cache-")
    atexit.register(shutil.rmtree, os.environ["AGENTENV_CACHE"], ignore_errors=True)

import pytest

import agentenv

KEYDOOR_IDS = [i for i in agentenv.env_ids() if "KeyDoor" in i]


def pydocs_missing() -> str | None:
    """Why AgentEnv/Search-PyDocs-v0 cannot build here (its corpus is the python3.11-doc system package, which
    .ci/run installs and a bare ``make test`` may not have), or None when it can."""
    from agentenv.envs.search.pydocs import find_source_dir

    try:
        find_source_dir()
    except Exception as e:
        return str(e)
    return None


def pytest_collection_modifyitems(config, items):
    """Tests parametrized over every env id skip the PyDocs env, naming the package, where its corpus is missing."""
    pydocs = [
        item
        for item in items
        if any("PyDocs" in str(v) for v in getattr(getattr(item, "callspec", None), "params", {}).values())
    ]
    if pydocs and (why := pydocs_missing()):
        for item in pydocs:
            item.add_marker(pytest.mark.skip(reason=f"python3.11-doc is not installed: {why}"))


@pytest.fixture
def keydoor():
    env = agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0")
    yield env
    env.close()
