#!/usr/bin/env bash
# Make sure the services the tests talk to are up: Redis (broker, limiter, cache), PostgreSQL (system of
# record) and, where installed, RabbitMQ (alternative broker). Starts what is installed but not running;
# installs Redis and PostgreSQL from Debian's packages on a machine that has neither.
set -u

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo "$@"; else "$@"; fi; }

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! have redis-server || ! have pg_ctlcluster; then
  if ! redis_up || ! pg_up; then
    echo "installing redis-server and postgresql from Debian's packages"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql >/dev/null
  fi
fi

if ! redis_up; then
  echo "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || redis-server --daemonize yes --port 6379 --save ""
fi

if ! pg_up; then
  echo "starting postgresql"
  for v in $(ls /etc/postgresql 2>/dev/null); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
fi

if have rabbitmq-server && ! rabbit_up; then
  echo "starting rabbitmq-server"
  as_root rabbitmq-server -detached || true
fi

for i in $(seq 1 30); do
  redis_up && pg_up && break
  sleep 1
done
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
# The tests connect as 'postgres' without a password (trust auth on loopback) and create their own databases.
psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1 \
  || echo "warning: cannot connect to PostgreSQL as postgres on 127.0.0.1 without a password; PostgreSQL tests will be skipped" >&2
echo "services: redis $(redis_up && echo up), postgresql $(pg_up && echo up)$(have rabbitmq-server && (rabbit_up && echo ', rabbitmq up' || echo ', rabbitmq down'))"
