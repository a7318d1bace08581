#!/usr/bin/env bash
# Native calls per decoding step: counts every call into TorchSharp's native library (libLibTorchSharp.so, the THS*
# functions each TorchSharp operation goes through) with uprobes, for a decode of N1 and of N2 output tokens per
# sentence, and prints the difference per step. Needs root and perf (apt-get install linux-perf).
# Usage: bench/profile-step.sh [Transduce.Bench step options, e.g. --synthetic base-cpu --batch 1]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/Transduce.Bench/bin/Release/net10.0"
lib="$bin/runtimes/linux-x64/native/libLibTorchSharp.so"
[ -f "$bin/Transduce.Bench.dll" ] || dotnet build "$here/Transduce.Bench" -c Release -v quiet -nologo
n1=${N1:-8} n2=${N2:-40} sentences=${SENTENCES:-4}
perf probe -q -d 'probe_libLibTorchSharp:*' 2>/dev/null || true
for f in $(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^THS/ { print $3 }'); do
  perf probe -q -x "$lib" -a "$f" 2>/dev/null || true
done
trap 'perf probe -q -d "probe_libLibTorchSharp:*" 2>/dev/null || true' EXIT
count() {
  perf stat -x, -e 'probe_libLibTorchSharp:*' -- dotnet "$bin/Transduce.Bench.dll" step --only-tokens "$1" --sentences "$sentences" "${@:2}" 2>&1 >/dev/null \
    | awk -F, '$3 ~ /probe_libLibTorchSharp/ && $1 ~ /^[0-9]+$/ { n += $1; by[$3] += $1 } END { print n; for (k in by) print by[k], k > "/dev/stderr" }'
}
c1=$(count "$n1" "$@" 2>/tmp/profile-step-1.txt)
c2=$(count "$n2" "$@" 2>/tmp/profile-step-2.txt)
steps=$(( (n2 - n1) * sentences ))
echo "native calls per decoding step: $(( (c2 - c1) / steps )) (($c2 − $c1) / $steps steps; batch as given, $sentences sentences)"
join -1 2 -2 2 <(sort -k2 /tmp/profile-step-1.txt) <(sort -k2 /tmp/profile-step-2.txt) \
  | awk -v s="$steps" '{ d = ($3 - $2) / s; if (d >= 0.5) printf "%8.1f  %s\n", d, $1 }' | sort -rn | sed 's/probe_libLibTorchSharp://' | head -40
