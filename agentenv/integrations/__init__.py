"""Bridges from AgentEnv environments to other training libraries (imported lazily; each needs its extra)."""
