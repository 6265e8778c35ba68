"""The gateway's async queue, in parts; import it as :mod:`workflows.gateway.async_queue`.

* :mod:`.base`: the call, the errors, the queue protocol, trying a call and posting its result;
* :mod:`.memory`: the in-process queue (not durable);
* :mod:`.jetstream`: the durable queue on NATS JetStream.
"""
