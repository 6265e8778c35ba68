"""rollout-collector function: one shard's rollout per iteration."""
