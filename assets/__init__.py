"""Dagster assets, checks, jobs, sensors and schedules: one module per stage, each thin."""
