"""Policies (``agentenv.policies``): what plays the environments.

Token-level runners (token ids in, :class:`Generation` out — what :func:`agentenv.rollout.rollout` drives):
:class:`TransformersPolicy` (in-process) and :class:`OpenAIPolicy` (any vLLM/SGLang-compatible server; chat mode
for hosted models, eval only). Scripted policies (random, walkthrough) play text turns for baselines and SFT data.
"""

from agentenv.policies.local import Generation, Sampling, TransformersPolicy
from agentenv.policies.openai_compat import OpenAIPolicy
from agentenv.policies.scripted import POLICIES, RandomPolicy, ScriptedPolicy, WalkthroughPolicy, make_policy
from agentenv.policies.tools import QWEN25_TOOL_TEMPLATE, parse_turn, tool_chat_format

__all__ = [
    "POLICIES",
    "QWEN25_TOOL_TEMPLATE",
    "Generation",
    "OpenAIPolicy",
    "RandomPolicy",
    "Sampling",
    "ScriptedPolicy",
    "TransformersPolicy",
    "WalkthroughPolicy",
    "make_policy",
    "parse_turn",
    "tool_chat_format",
]
