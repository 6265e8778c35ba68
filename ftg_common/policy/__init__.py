"""Actor-critic policies: a shared spec, numpy inference for rollouts, torch for training.

Only `spec` is re-exported: importing this package must not pull in torch, because the rollout
path depends on a fast cold start. Import `ftg_common.policy.torch_policy` explicitly in the
updater.
"""

from ftg_common.policy.spec import PolicySpec, tensor_names, tensor_shapes

__all__ = ["PolicySpec", "tensor_names", "tensor_shapes"]
