#!/usr/bin/env bash
# Issue 27, corpora larger than memory: a synthetic corpus of PAIRS pairs (default 20,000,000) made from train.tsv by
# random recombination (two or three random pairs joined on each side, aligned; seed 27) into $WORK under /tmp — never
# commit it —, then `prepare` on it (train.json: one update) and `train --resume`, which trains that first update from its shards, each under
# /usr/bin/time -v (peak RSS, wall time). Then training throughput from shards against in-memory on a small corpus,
# alternated ROUNDS times (BIG=0 skips the large corpus). Run from the repository root: bash bench/corpus-stream.sh
set -euo pipefail
PAIRS=${PAIRS:-20000000}
SMALL=${SMALL:-20000}
ROUNDS=${ROUNDS:-3}
UPDATES=${UPDATES:-40}
SOURCE=${SOURCE:-../shared/data/fra-eng/train.tsv}
WORK=${WORK:-/tmp/transduce-corpus-stream}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
CORPUS="$WORK/synthetic-$PAIRS.tsv"

if [ ! -s "$CORPUS" ]; then
  echo "generating $CORPUS ($PAIRS pairs from $SOURCE)" >&2
  /usr/bin/time -f "generate: %e s wall" python3 - "$SOURCE" "$CORPUS" "$PAIRS" <<'PY'
import random, sys
source, target, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(27)
rows = [line.rstrip("\n").split("\t")[:2] for line in open(source, encoding="utf-8") if "\t" in line]
n = len(rows)
with open(target + ".part", "w", encoding="utf-8", buffering=1 << 22) as out:
    for _ in range(pairs):
        picks = [rows[random.randrange(n)] for _ in range(random.choice((2, 3)))]
        out.write(" ".join(p[0] for p in picks) + "\t" + " ".join(p[1] for p in picks) + "\n")
import os
os.replace(target + ".part", target)
PY
fi
ls -l "$CORPUS" >&2

./transduce --help > /dev/null   # builds the command once; the timed runs call it directly (no build check inside them)
transduce() { dotnet src/Transduce.Cli/bin/Release/net10.0/Transduce.Cli.dll "$@"; }
RUN="$WORK/run-$PAIRS"
if [ "${BIG:-1}" = 1 ]; then
rm -rf "$RUN"
echo "== prepare $PAIRS pairs" >&2
/usr/bin/time -v dotnet src/Transduce.Cli/bin/Release/net10.0/Transduce.Cli.dll prepare --preset transformer-base-cpu --data "$CORPUS" --drop-duplicates --filter-max-length 128 \
    --filter-length-ratio 3 --max-updates 1 --threads "$THREADS" --out "$RUN" 2> "$WORK/prepare.time" | tee "$WORK/prepare.log"
grep -E "Maximum resident|Elapsed \(wall" "$WORK/prepare.time"
echo "== train --resume, first update" >&2
/usr/bin/time -v dotnet src/Transduce.Cli/bin/Release/net10.0/Transduce.Cli.dll train --resume "$RUN" --threads "$THREADS" 2> "$WORK/train.time" | tee "$WORK/train.log"
grep -E "Maximum resident|Elapsed \(wall" "$WORK/train.time"
fi

echo "== throughput: $SMALL pairs, $UPDATES updates, in memory vs from shards, $ROUNDS rounds" >&2
SMALLRUN="$WORK/small"
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$SMALLRUN-memory" "$SMALLRUN-shards"
  transduce train --preset transformer-base-cpu --data "$SOURCE" --max-pairs "$SMALL" --max-updates "$UPDATES" --threads "$THREADS" \
      --out "$SMALLRUN-memory" | grep -E "^done:" | sed "s/^/round $round memory: /"
  transduce prepare --preset transformer-base-cpu --data "$SOURCE" --max-pairs "$SMALL" --max-updates "$UPDATES" --threads "$THREADS" \
      --out "$SMALLRUN-shards" > /dev/null
  transduce train --resume "$SMALLRUN-shards" --threads "$THREADS" | grep -E "^done:" | sed "s/^/round $round shards: /"
  cmp -s "$SMALLRUN-memory/model.safetensors" "$SMALLRUN-shards/model.safetensors" && echo "round $round: identical weights" || echo "round $round: weights differ"
done
