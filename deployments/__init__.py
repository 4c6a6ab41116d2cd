"""Deployments of the newsgroups flow: ``python -m deployments.serve`` serves those of prefect.yaml."""
