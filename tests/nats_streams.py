"""JetStream streams of a test's own: a fresh name per test, deleted afterwards.

NATS is ``FTG_TEST_NATS_URL`` or nats://127.0.0.1:4222.
"""

from __future__ import annotations

import asyncio
import os
import uuid

NATS_URL = os.environ.get("FTG_TEST_NATS_URL", "nats://127.0.0.1:4222")


def new_stream_name() -> str:
    """A stream name no other test uses (its subjects and consumer follow from it)."""
    return f"ftgtest-{uuid.uuid4().hex[:12]}"


def delete_stream(name: str, url: str = NATS_URL) -> None:
    """Delete stream ``name`` from the server at ``url``; a stream that is not there is fine."""
    import nats
    import nats.js.errors

    async def delete() -> None:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())
