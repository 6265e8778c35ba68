"""Test-only handlers with the python3-http ``handle(event, context)`` contract.

They stand in for the real functions so engine and invoker tests need no store, env or torch. State
that must survive across worker processes (flaky) lives in a file named by the request.
"""
