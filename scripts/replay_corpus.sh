#!/usr/bin/env bash
# Replay every corpus study (specs/corpus/, trained by scripts/train_corpus.sh into warehouse/corpus/)
# under every stopping policy: 4 workers, the sweep order and 20 seeded random orders. `transfer`
# includes the corpus predictor refit without the replayed study (stages/replay.py). Each study's
# wall time goes to the log; reports/<study>/replay.md holds its section. Usage, from the repository root:
#   nohup nice -n 5 bash scripts/replay_corpus.sh [specs/corpus/x.yaml ...] > replay_corpus.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WAREHOUSES=${WAREHOUSES:-warehouse/corpus}
specs=("$@")
[ ${#specs[@]} -eq 0 ] && specs=(specs/corpus/*.yaml)
for spec in "${specs[@]}"; do
    name=$(basename "$spec" .yaml)
    echo "=== $(date -u +%FT%TZ) $name replay"
    /usr/bin/time -f "wall %e s, peak %M KiB" $PY -m flows.replay --spec "$spec" --warehouse "$WAREHOUSES/$name.duckdb" \
        --workers 4 --orders 20 2>&1 | grep -v "replayed .* policy settings" | tail -n 6
    echo "=== $(date -u +%FT%TZ) $name done (exit ${PIPESTATUS[0]})"
done
echo "=== $(date -u +%FT%TZ) all done"
