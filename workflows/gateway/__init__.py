"""A small OpenFaaS-compatible gateway that serves the functions on one machine."""
