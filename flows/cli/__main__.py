"""`python -m flows.cli`: the `pitfall` command."""

from flows.cli import app

if __name__ == "__main__":
    app()
