"""First-error localization: Monte-Carlo search (mc-binary, mc-linear), a PRM,
an LLM judge, imported annotations and consensus between two methods."""

METHODS = ("mc-binary", "mc-linear", "prm", "judge", "annotated", "consensus")
