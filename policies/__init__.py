"""Policies (``agentenv.policies``): what plays the environments.

For now: scripted policies (random, walkthrough) used by ``agentenv rollout`` and the demo. Model runners
(transformers, vLLM, OpenAI-compatible) and trainers build on the same text-level contract.
"""

from agentenv.policies.local import Generation, Sampling, TransformersPolicy
from agentenv.policies.scripted import POLICIES, RandomPolicy, ScriptedPolicy, WalkthroughPolicy, make_policy

__all__ = [
    "POLICIES",
    "Generation",
    "RandomPolicy",
    "Sampling",
    "ScriptedPolicy",
    "TransformersPolicy",
    "WalkthroughPolicy",
    "make_policy",
]
