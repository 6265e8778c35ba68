"""Function tests: each handler through the python3-http contract (in-process and WSGI)."""
