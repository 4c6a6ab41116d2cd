"""Prefect flows of the project, and the command line that runs them (``flows/cli.py``)."""
