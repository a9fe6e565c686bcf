#!/usr/bin/env bash
# Makes sure the real services that the scale-out tests need are up: PostgreSQL on
# 127.0.0.1:5432 (trust auth) and NATS on 127.0.0.1:4222. They run on every machine of this
# project before CI starts; when one has stopped, it is started with the same command the
# machine uses, then waited for. Fails (and so fails CI) when one cannot be reached.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
  for _ in $(seq 100); do up "$1" && return 0; sleep 0.2; done
  echo "$2 is not reachable on 127.0.0.1:$1" >&2
  return 1
}

if ! up 5432; then
  echo "PostgreSQL is down: starting it"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
fi
wait_for 5432 PostgreSQL

if ! up 4222; then
  echo "NATS is down: starting it"
  if [ -x /usr/sbin/nats-server ]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  fi
fi
wait_for 4222 NATS
echo "PostgreSQL and NATS are up"
