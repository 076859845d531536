#!/bin/bash
# 10 A/A and 10 A/B (150 ns), alternating, with the gate profile, both sides at once.
cd /work/main
for i in 01 02 03 04 05 06 07 08 09 10; do
  .venv/bin/python -m bench ab . . --profile gate --pairs 16 --together --out /tmp/acc --run-id aa$i > /tmp/acc/aa$i.log 2>&1
  echo "aa$i rc=$? $(tail -1 /tmp/acc/aa$i.log)" >> /tmp/acc/summary.txt
  .venv/bin/python -m bench ab . . --profile gate --pairs 16 --together --new-inject-delay-ns 150 --out /tmp/acc --run-id ab$i > /tmp/acc/ab$i.log 2>&1
  echo "ab$i rc=$? $(tail -1 /tmp/acc/ab$i.log)" >> /tmp/acc/summary.txt
done
echo done >> /tmp/acc/summary.txt
