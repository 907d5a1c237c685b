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


@pytest.fixture
def keydoor():
    env = agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0")
    yield env
    env.close()
