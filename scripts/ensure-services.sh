#!/usr/bin/env bash
# Start the local Redis server the integration tests talk to, if it is not answering already.
set -eu
port="${FTG_TEST_REDIS_PORT:-6379}"
if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
  exit 0
fi
if command -v redis-server >/dev/null 2>&1; then
  mkdir -p /tmp/ftg-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir /tmp/ftg-redis --logfile /tmp/ftg-redis/redis.log
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && exit 0
    sleep 0.1
  done
fi
echo "Redis is not reachable on 127.0.0.1:$port and could not be started (apt-get install redis-server)" >&2
exit 1
