"""policy-evaluator function: evaluation episodes of a policy version."""
