"""The model and the engine: steps, topics, the registry, runs, ``ctx``, delivery."""
