"""Wiring: the `pitfall` CLI and Prefect flows over the stages in ``pipeline``."""

import os

# Prefect's ephemeral server reports usage to the internet, which these
# machines cannot reach (every run logged an error); the user's choice wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
