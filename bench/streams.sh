#!/bin/sh
# How many camera streams one model keeps up with: N copies of a real clip read at its own
# frame rate (source.realtime, as a camera sends them), one CoX3D stream each, stepping
# preprocess.fps frames per second of each (0: every frame). Prints, for the run, frames read
# and dropped, the slowest stream's input rate and the latencies (docs/bench.md).
#   bench/streams.sh SIZE FPS N [CLIP]      e.g. bench/streams.sh s 5 8
set -eu
size=$1 fps=$2 n=$3
here=$(cd "$(dirname "$0")" && pwd)
clip=${4:-$here/../tests/media/mecavideo__balle-jbart.mp4}
run=${CIN_RUN:-$here/../build/cin-run}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
    echo "sources:"
    i=0
    while [ "$i" -lt "$n" ]; do
        echo "  - {uri: '$clip', id: cam$i, realtime: true}"
        i=$((i + 1))
    done
    echo "preprocess: {fps: $fps}"
    echo "model: {arch: x3d, size: $size}"
    echo "sinks: [{type: jsonl, path: '$dir/out.jsonl'}]"
} > "$dir/streams.yaml"
"$run" --quiet --stats-json "$dir/stats.json" "$dir/streams.yaml" 2>"$dir/log" >/dev/null ||
    { cat "$dir/log" >&2; exit 1; }
python3 - "$dir/stats.json" "$size" "$fps" "$n" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
st = s["streams"]
read = sum(x["frames_in"] for x in st)
drops = sum(x["drops"] for x in st)
out = min(x["fps_in"] for x in st)
e2e = max(x["e2e_ms"]["p99"] for x in st)
print(f"x3d-{sys.argv[2]} fps {sys.argv[3]} streams {sys.argv[4]}: {read} frames stepped or "
      f"dropped, {drops} dropped, slowest stream {out:.2f} frames/s in, step p50 "
      f"{s['latency_ms']['p50']:.1f} ms, end to end p99 {e2e:.1f} ms (worst stream), "
      f"{s['workers']} workers")
PY
