#!/usr/bin/env bash
# The general (parsed) path's cost: loadgen at 10 connections, --verify auto vs parse,
# alternating, 2 s each, against nginx (the client core is the limit) and against epoll.
set -euo pipefail
cd "$1"
PY=.venv/bin/python
for server in nginx epoll; do
  $PY -m servers run $server --protocol http --port 0 > /tmp/vc-$server.out 2>/dev/null &
  spid=$!
  while ! grep -q ready /tmp/vc-$server.out 2>/dev/null; do sleep 0.05; done
  port=$($PY -c "import json; print(json.loads(open('/tmp/vc-$server.out').readline())['port'])")
  taskset -pc 0 $spid >/dev/null; for c in $(pgrep -P $spid); do taskset -pc 0 $c > /dev/null; done
  modes="auto parse"; [ $server = epoll ] && modes="exact parse"
  for round in 1 2 3 4 5 6; do
    for mode in $modes; do
      rps=$($PY -m clients.loadgen --target 127.0.0.1:$port --protocol http --payload 0 \
        --connections 10 --duration 2 --warmup 0.5 --cpus 1 --verify $mode --quiet \
        | $PY -c "import json,sys; d=json.load(sys.stdin); print(round(d['throughput_rps']), sum(d['errors'].values()), d['client']['bound'])")
      echo "$server $mode $round $rps"
    done
  done
  kill $spid; wait $spid 2>/dev/null || true
done
