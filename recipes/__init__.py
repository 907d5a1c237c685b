"""Built-in YAML recipes (``agentenv.recipes``)."""
