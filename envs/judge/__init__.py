"""Judges you can train: verification data built offline (:mod:`.data`) and, next, the ``AgentEnv/Judge-*`` envs
where a judge is one more agent that learns (see README.md in this folder)."""
