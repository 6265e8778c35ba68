"""Integration tests against real servers: Redis, an S3-protocol server, HTTP gateways."""
