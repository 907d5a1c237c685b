"""First-party environment families (``agentenv.envs``). Each registers through the ``agentenv.envs`` entry point."""
