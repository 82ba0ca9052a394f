"""pitfall's library: stage logic over Arrow/Polars tables, and the trace store.

Nothing here imports from ``flows`` or ``trainers``.
"""

__version__ = "0.1.0"
