"""policy-updater function: one PPO update per iteration."""
