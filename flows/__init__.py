"""Wiring: the `pitfall` CLI and Prefect flows over the stages in ``pipeline``."""
