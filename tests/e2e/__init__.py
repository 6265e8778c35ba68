"""End to end: learning, sweeps through the CLI, kill and resume."""
