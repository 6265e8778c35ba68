"""Workflows: the Hera DAG, the driver and CLI, the engines, the local gateway, tracking and comparison."""
