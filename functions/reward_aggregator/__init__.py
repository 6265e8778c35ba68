"""reward-aggregator function: GAE over an iteration's shards into one training batch."""
