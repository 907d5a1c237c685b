import os
import tempfile

# Games and other generated tasks go to a fresh cache per test session unless the caller chose one.
os.environ.setdefault("AGENTENV_CACHE", tempfile.mkdtemp(prefix="agentenv-test-cache-"))

import pytest

import agentenv

KEYDOOR_IDS = [i for i in agentenv.env_ids() if "KeyDoor" in i]


@pytest.fixture
def keydoor():
    env = agentenv.make("AgentEnv/KeyDoor-s3k1d2-v0")
    yield env
    env.close()
