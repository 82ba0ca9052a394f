"""The embedded default: a checkable arithmetic task and tiny models trained on it.

Nothing outside this package knows it exists: to the rest of pitfall it is a
problem source (data/toy/*.jsonl) and two model folders (data/models/toy-*).
"""
