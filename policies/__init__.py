"""Policies (``agentenv.policies``): what plays the environments.

Token-level runners (:class:`~agentenv.policy.TokenPolicy`: token ids in, :class:`Generation` out — what
:func:`agentenv.rollout.rollout` drives): :class:`TransformersPolicy` (in-process), :class:`OpenAIPolicy` (a vLLM,
SGLang or llama.cpp server; chat mode for hosted models, eval only) and ``VLLMPolicy`` (the ``gpu`` extra). Scripted
policies (random, walkthrough) play text turns for baselines and SFT data. Every one plays
:func:`agentenv.rollout.play_episode` turn by turn; :func:`build_policy` makes one from its name
(``model:NAME|PATH``, ``openai:URL[#MODEL]``, ``vllm:PATH``, ``random``, ``walkthrough``).
"""

from agentenv.policies.backends import build_policy
from agentenv.policies.local import TransformersPolicy
from agentenv.policies.openai_compat import OpenAIPolicy
from agentenv.policies.scripted import POLICIES, RandomPolicy, ScriptedPolicy, WalkthroughPolicy, make_policy
from agentenv.policies.tools import QWEN25_TOOL_TEMPLATE, parse_turn, tool_chat_format
from agentenv.policy import EpisodePolicy, Generation, Sampling, TokenPolicy

__all__ = [
    "POLICIES",
    "QWEN25_TOOL_TEMPLATE",
    "EpisodePolicy",
    "Generation",
    "OpenAIPolicy",
    "RandomPolicy",
    "Sampling",
    "ScriptedPolicy",
    "TokenPolicy",
    "TransformersPolicy",
    "WalkthroughPolicy",
    "build_policy",
    "make_policy",
    "parse_turn",
    "tool_chat_format",
]
