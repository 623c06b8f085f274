#!/usr/bin/env bash
# The container flow end to end, on a machine that may have no running container engine and
# no reachable image registry:
#
#   1. an engine: a running Docker, else dockerd started here (no bridge, no iptables, default
#      ulimits nofile=20000 nproc=4096) and stopped again by its PID, else podman;
#   2. the base image, once: a Debian bookworm root from mmdebstrap, imported as kps-base;
#   3. the kafka-ps image from docker/Dockerfile on that base (KPS_BUILD_CA=<PEM bundle> adds a
#      TLS-inspecting proxy's CA certificates to the build);
#   4. kps kafka start's broker (KPS_KAFKA_PORT, default 19092), and the server and two worker
#      containers from docker/compose.yml + compose.host.yml on the host network;
#   5. the flights demo produced by the one-shot producer container, learned, and the model
#      exported by the one-shot model container; the .npz must hold parameters;
#   6. teardown: compose down, then the broker and dockerd if this script started them.
#
#   bash docker/container-test.sh            (as root; prints the time of each step)
#
# Needs the project's venv (bash docker/local.sh setup) and, from Debian, docker.io and
# docker-compose (or podman and podman-compose) and mmdebstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${KPS_CONTAINER_WORK:-/var/tmp/kps-container}
records=${KPS_DEMO_RECORDS:-20000}
export KPS_KAFKA_PORT=${KPS_KAFKA_PORT:-19092}
export KPS_KAFKA_CONTROLLER_PORT=${KPS_KAFKA_CONTROLLER_PORT:-19093}
kps=$repo/.venv/bin/kps
python=$repo/.venv/bin/python
mkdir -p "$work"
timings=$work/timings.txt
: > "$timings"

step() {
  local name=$1 started
  shift
  started=$(date +%s)
  echo "== $name: $*" >&2
  "$@"
  echo "$name: $(( $(date +%s) - started ))s" | tee -a "$timings" >&2
}

dockerd_pid=""
broker_started=""
project=kpsct
compose=()

cleanup() {
  set +e
  if [ ${#compose[@]} -gt 0 ]; then
    step "compose down" "${compose[@]}" down --timeout 10
  fi
  [ -n "$broker_started" ] && "$kps" kafka stop
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f docker/ca/build-ca.crt
  echo "== timings (also in $timings)" >&2
  cat "$timings" >&2
}
trap cleanup EXIT

# -- 1. the engine ---------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  engine=docker
elif command -v dockerd >/dev/null; then
  engine=docker
  export DOCKER_HOST=unix:///run/kps-docker.sock
  if ! docker info >/dev/null 2>&1; then
    mkdir -p /run/kps-docker /var/lib/kps-docker
    dockerd --host "$DOCKER_HOST" --data-root /var/lib/kps-docker --exec-root /run/kps-docker \
      --pidfile /run/kps-docker/dockerd.pid --bridge=none --iptables=false --ip-masq=false \
      --default-ulimit nofile=20000:20000 --default-ulimit nproc=4096:4096 \
      >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null
  fi
elif command -v podman >/dev/null; then
  engine=podman
  export CONTAINERS_CONF=$work/containers.conf
  cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
netns = "host"
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
else
  echo "no container engine: apt-get install docker.io docker-compose (or podman)" >&2
  exit 1
fi
if [ "$engine" = docker ]; then
  compose=(docker-compose -p "$project" -f docker/compose.yml -f docker/compose.host.yml)
else
  compose=(podman-compose -p "$project" -f docker/compose.yml -f docker/compose.host.yml)
fi

# -- 2. the base image -----------------------------------------------------------------
if ! "$engine" image inspect kps-base:bookworm >/dev/null 2>&1; then
  if [ ! -s "$work/rootfs.tar" ]; then
    step "mmdebstrap" mmdebstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$work/rootfs.tar"
  fi
  step "import base" "$engine" import "$work/rootfs.tar" kps-base:bookworm
fi

# -- 3. the image ----------------------------------------------------------------------
if [ -n "${KPS_BUILD_CA:-}" ]; then
  cp "$KPS_BUILD_CA" docker/ca/build-ca.crt
fi
step "build image" env DOCKER_BUILDKIT=0 "$engine" build --network host \
  --build-arg BASE=kps-base:bookworm -f docker/Dockerfile -t kafka-ps:latest .

# -- 4. broker and long-running containers ---------------------------------------------
if ! "$kps" kafka status >/dev/null; then
  broker_started=yes
fi
step "kps kafka start" "$kps" kafka start
run=ct-$(date +%Y%m%d-%H%M%S)
export KPS_BROKER=127.0.0.1:$KPS_KAFKA_PORT KPS_APP_ID=$run KPS_INPUT_TOPIC=$run-input
export KPS_PARTITIONS=2 KPS_SHARDS=4 KPS_DEMO_RECORDS=$records KPS_MODEL_OUT=$work/out
step "compose up" "${compose[@]}" up -d --no-deps --no-build --scale worker=2 server worker

# -- 5. train the demo, export the model -----------------------------------------------
step "producer container" "${compose[@]}" run --rm --no-deps producer
step "learned" "$python" -c "
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.termination import end_offsets, wait_until_learned
s = JobSettings()
wait_until_learned(s, end_offsets(s.broker, s.input_topic, s.partitions), timeout=600)
"
rm -rf "$work/out" && mkdir -p "$work/out" && chmod 777 "$work/out"
step "model container" "${compose[@]}" run --rm --no-deps model
"$python" -c "
import numpy as np
with np.load('$work/out/model.npz') as model:
    assert len(model.files) > 0, 'empty model'
    print(f'model.npz: {len(model.files)} arrays')
"
"${compose[@]}" ps
echo "container flow: ok ($records flights records trained in containers)" >&2
