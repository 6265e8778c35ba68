"""The policy-updater's work, one room per job.

- :mod:`.plan` — what an update will do, as a pure function of the config, the counters and the seed:
  learning rate and clip range from their schedules, the minibatch order of every epoch.
- :mod:`.loop` — the one PPO epoch/minibatch loop (advantage normalisation, ``target_kl`` early stop,
  statistics), written against the :class:`~ftg_common.update.loop.PPOBackend` protocol.
- :mod:`.numpy_backend` (default, hand-written gradients) and :mod:`.torch_backend` (autograd
  reference; also the seeded initial weights) — the two backends behind that protocol.
- :mod:`.ppo` — the pure core: ``train(version, batch, config, iteration) -> (version + 1, stats)``.
- :mod:`.fence` — the compare-and-set that lets exactly one update of an iteration commit.

DQN is the second algorithm: :mod:`.dqn_plan` (the counters' plan: learning rate, target syncs,
gradient steps), :mod:`.dqn_loop` (target updates, then one step per sampled minibatch), its numpy and
torch backends, and :mod:`.dqn` (``train_dqn(version, plan, batches, config)``); it reuses the
schedules, checkpoints (:func:`ftg_common.checkpoints.write_version` writes either family) and fence.

Tabular Q-learning is the third: :mod:`.qlearning_plan` (step size, whether to train, replayed
minibatches) and :mod:`.qlearning` (``train_qlearning(version, plan, collected, replayed)``: the TD
update over the iteration's transitions in collected order); see docs/qlearning.md.

Reading and writing versions is :mod:`ftg_common.checkpoints`.
"""
