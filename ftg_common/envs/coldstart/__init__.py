"""A trace-driven serverless cold-start environment: ``FaaSColdStart-v0`` and ``FaaSColdStartMulti-v0``.

Modules, each with one job (numpy only unless noted):

* :mod:`.arrivals`: synthetic invocation traces with the published Azure Functions 2019 statistics;
* :mod:`.azure_trace`: reader/writer of the real Azure 2019 per-minute invocation files;
* :mod:`.trace`: the trace the simulator replays (per function: arrival and service times);
* :mod:`.simulator`: replicas, cold starts, queueing and the per-step accounting;
* :mod:`.metrics`: the report's figures over a simulation;
* :mod:`.controller`: the interface of a scaling policy and the loop that runs one;
* :mod:`.env`: the gymnasium environments (imports gymnasium);
* :mod:`.registration`: their ids (imports gymnasium, not the simulator).

See ``docs/coldstart-env.md`` for the model, its units, the reward and every parameter. Importing this
package imports none of them.
"""
