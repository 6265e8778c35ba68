"""Pure RL math: advantage estimation, PPO losses and summary statistics."""
