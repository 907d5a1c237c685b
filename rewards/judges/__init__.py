"""Generative judges: rewards read from a language model's probability of answering "Yes".

* :class:`PointwiseJudge` — P("Yes") that a response is correct (RewardDance-style generative reward), optionally
  with principles (given, or written by the judge per question) and k sampled critiques whose verdicts are averaged
  or voted (DeepSeek-GRM).
* :class:`PairwiseJudge` — P(A better than B), scored in both orders and averaged to cancel position bias.
* :class:`GroupJudge` — RULER-style: each response judged with the whole group of responses to its prompt in context.
* :class:`ProcessJudge` — P("Yes") that each assistant step of a conversation is correct and useful (GenPRM-style).
* :class:`EvidenceJudge` — no model: the pairwise interface from rules (the side that states the correct answer and
  quotes the documents verbatim wins); offline and deterministic, the debate game's default judge.

``p_yes = sum P(yes variants) / (sum P(yes variants) + sum P(no variants))`` at the first answer token, from the
logits of a local causal LM (:class:`LocalLM`, default: SmolLM2-135M-Instruct, offline) or from the top logprobs of
any OpenAI-compatible server (:class:`OpenAIServer`). Prompts are YAML data in ``prompts/`` (:class:`PromptTemplate`).
Prompts longer than the judge's context are shortened in the middle of their longest fields, noted in ``details``.

Where things live: ``templates`` (prompts as data), ``verdicts`` (P(yes) from answer words), ``backends`` (the
models), ``fitting`` (prompts into the context), ``base`` (what judges share) and one module per judge.
"""

from agentenv.rewards.judges.backends import JudgeBackend, LocalLM, OpenAIServer, as_backend, shared_local_lm
from agentenv.rewards.judges.base import Judge
from agentenv.rewards.judges.evidence import EvidenceJudge
from agentenv.rewards.judges.fitting import MIN_KEPT_CHARS, Fitted, fit
from agentenv.rewards.judges.group import GROUP_NORMALIZE, GroupJudge
from agentenv.rewards.judges.pairwise import IDENTICAL, PairwiseJudge
from agentenv.rewards.judges.pointwise import AGGREGATES, PointwiseJudge
from agentenv.rewards.judges.process import PROCESS_AGGREGATES, ProcessJudge
from agentenv.rewards.judges.templates import TEMPLATE_KEYS, Chat, PromptTemplate, as_template, available_templates
from agentenv.rewards.judges.verdicts import NO_WORDS, YES_WORDS, Verdict, verdict_from_top_logprobs

__all__ = [
    "AGGREGATES",
    "GROUP_NORMALIZE",
    "IDENTICAL",
    "MIN_KEPT_CHARS",
    "NO_WORDS",
    "PROCESS_AGGREGATES",
    "TEMPLATE_KEYS",
    "YES_WORDS",
    "Chat",
    "EvidenceJudge",
    "Fitted",
    "GroupJudge",
    "Judge",
    "JudgeBackend",
    "LocalLM",
    "OpenAIServer",
    "PairwiseJudge",
    "PointwiseJudge",
    "ProcessJudge",
    "PromptTemplate",
    "Verdict",
    "as_backend",
    "as_template",
    "available_templates",
    "fit",
    "shared_local_lm",
    "verdict_from_top_logprobs",
]
