"""AgentEnv: Gymnasium environments, rewards, rollouts and trainers for multi-turn LLM agents.

>>> import gymnasium as gym
>>> env = gym.make("agentenv:AgentEnv/KeyDoor-s3k1d2-v0")
>>> observation, info = env.reset(seed=0)
"""

from agentenv.core import Action, InvalidAction, TextEnv, parse_action
from agentenv.errors import ConfigError, EnvContractError, UnknownEnvError
from agentenv.registry import (
    NAMESPACE,
    env_ids,
    list_multi,
    load_plugins,
    make,
    make_multi,
    make_vec,
    register,
    register_multi,
    spec,
)
from agentenv.spaces import ActionSpace, TextSpace, ToolCall

__version__ = "0.1.0"

__all__ = [
    "NAMESPACE",
    "Action",
    "ActionSpace",
    "ConfigError",
    "EnvContractError",
    "InvalidAction",
    "TextEnv",
    "TextSpace",
    "ToolCall",
    "UnknownEnvError",
    "env_ids",
    "list_multi",
    "load_plugins",
    "make",
    "make_multi",
    "make_vec",
    "parse_action",
    "register",
    "register_multi",
    "spec",
]

# Last, so that plugins importing `agentenv` during loading find everything above.
load_plugins()
