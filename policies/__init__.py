"""Policies (``agentenv.policies``): what plays the environments.

For now: scripted policies (random, walkthrough) used by ``agentenv rollout`` and the demo. Model runners
(transformers, vLLM, OpenAI-compatible) and trainers build on the same text-level contract.
"""

from agentenv.policies.scripted import POLICIES, RandomPolicy, ScriptedPolicy, WalkthroughPolicy, make_policy

__all__ = ["POLICIES", "RandomPolicy", "ScriptedPolicy", "WalkthroughPolicy", "make_policy"]
