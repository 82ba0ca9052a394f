"""First-error localization: Monte-Carlo search (mc-binary, mc-binary-confirmed,
mc-linear), a PRM, an LLM judge, imported annotations and consensus between two
methods. The registry of methods is ``pipeline.stages.localize.METHODS``."""
