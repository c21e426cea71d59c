"""Runs onto-flink jobs on PyFlink: ``python -m onto_flink_job JOB.json``."""
