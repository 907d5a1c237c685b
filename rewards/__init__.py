"""Reward components (``agentenv.rewards``): verifiers, rubrics, judges and shaping, composed like ``nn.Module``s.

Rewards depend only on the ``agentenv`` core, never on envs or policies.
"""

from agentenv.rewards.antihack import JudgeMonitor, audit, guarded, load_probes
from agentenv.rewards.base import (
    Gate,
    Reward,
    RewardDict,
    RewardFn,
    RewardList,
    Sample,
    Score,
    Sequential,
    WeightedSum,
)
from agentenv.rewards.extract import Extract, extract_answer
from agentenv.rewards.guards import (
    AnswerPresent,
    DegenerateAnswer,
    HedgedAnswer,
    NonEmptyAnswer,
    PaddedAnswer,
    ReferenceEcho,
)
from agentenv.rewards.judges import (
    GroupJudge,
    LocalLM,
    OpenAIServer,
    PairwiseJudge,
    PointwiseJudge,
    ProcessJudge,
    PromptTemplate,
)
from agentenv.rewards.nuggets import (
    EmbeddingMatcher,
    JudgeMatcher,
    LexicalMatcher,
    LLMNuggetExtractor,
    NuggetRubric,
    extract_nuggets,
)
from agentenv.rewards.rules import (
    ExactMatch,
    FormatCheck,
    NumericMatch,
    RegexMatch,
    TestPassRatio,
    TokenF1,
    ToolCallValidity,
)
from agentenv.rewards.shaping import (
    REWARD_MODES,
    CentredSigmoid,
    FormatPenalty,
    LengthPenalty,
    ProgressDensity,
    ProgressReward,
    discounted_returns,
)

__all__ = [
    "REWARD_MODES",
    "AnswerPresent",
    "CentredSigmoid",
    "DegenerateAnswer",
    "EmbeddingMatcher",
    "ExactMatch",
    "Extract",
    "FormatCheck",
    "FormatPenalty",
    "Gate",
    "GroupJudge",
    "HedgedAnswer",
    "JudgeMatcher",
    "JudgeMonitor",
    "LLMNuggetExtractor",
    "LengthPenalty",
    "LexicalMatcher",
    "LocalLM",
    "NonEmptyAnswer",
    "NuggetRubric",
    "NumericMatch",
    "OpenAIServer",
    "PaddedAnswer",
    "PairwiseJudge",
    "PointwiseJudge",
    "ProcessJudge",
    "ProgressDensity",
    "ProgressReward",
    "PromptTemplate",
    "ReferenceEcho",
    "RegexMatch",
    "Reward",
    "RewardDict",
    "RewardFn",
    "RewardList",
    "Sample",
    "Score",
    "Sequential",
    "TestPassRatio",
    "TokenF1",
    "ToolCallValidity",
    "WeightedSum",
    "audit",
    "discounted_returns",
    "extract_answer",
    "extract_nuggets",
    "guarded",
    "load_probes",
]
