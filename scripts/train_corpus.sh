#!/usr/bin/env bash
# Train the corpus studies (specs/corpus/) one after another, then their graphs up to epoch 5 (what the
# features at k <= 5 read) and their features; one warehouse per study under warehouse/corpus/.
# Each stage's wall time and peak memory go to the log (/usr/bin/time -v). Every stage skips what is
# done, so re-running after an interruption resumes. Usage, from the repository root:
#   nohup nice -n 5 bash scripts/train_corpus.sh [specs/corpus/x.yaml ...] > corpus.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
specs=("$@")
[ ${#specs[@]} -eq 0 ] && specs=(specs/corpus/*.yaml)
mkdir -p warehouse/corpus
for spec in "${specs[@]}"; do
    name=$(basename "$spec" .yaml)
    wh=warehouse/corpus/$name.duckdb
    for stage in train_sweep graph_metrics features; do
        extra=()
        [ "$stage" = graph_metrics ] && extra=(--until-epoch 5)
        echo "=== $(date -u +%FT%TZ) $name $stage"
        /usr/bin/time -v $PY -m flows.$stage --spec "$spec" --warehouse "$wh" "${extra[@]}" 2>&1 \
            | grep -v "^\s*\(Average\|Major\|Minor\|Voluntary\|Involuntary\|Swaps\|File system\|Socket\|Signals\|Page size\|Exit status\|Percent\|System time\|User time\|Maximum resident\)" \
            | tail -n 25
        echo "=== $(date -u +%FT%TZ) $name $stage done (exit ${PIPESTATUS[0]})"
    done
done
echo "=== $(date -u +%FT%TZ) all done"
