"""Shared library of FaaSTrainGym: settings, schemas, stores, pure RL math, policies, envs."""

__version__ = "0.1.0"
