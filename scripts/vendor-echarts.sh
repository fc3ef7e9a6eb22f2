#!/usr/bin/env bash
# Apache ECharts, the analysis page's charting library, from the npm registry into var/vendor/
# (the sidecar serves it itself: the centres' networks reach no CDN). Checked against the
# integrity the registry publishes for this version; the package is cached outside the
# repository. Idempotent; called by bootstrap.sh and the Docker build.
#
#   scripts/vendor-echarts.sh [DEST]        (default var/vendor)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
version=6.1.0
integrity=sha512-q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==
dest=${1:-$here/var/vendor}
cache=${HOTLINE_CACHE:-/var/cache/hotline-link}

if [ "$(cat "$dest/echarts.version" 2>/dev/null)" = "$version" ] && [ -f "$dest/echarts.min.js" ]; then
  exit 0
fi
mkdir -p "$cache" "$dest"
tgz="$cache/echarts-$version.tgz"
if [ ! -f "$tgz" ]; then
  (cd "$cache" && npm pack "echarts@$version" --silent >/dev/null)
fi
got="sha512-$(python3 -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")"
if [ "$got" != "$integrity" ]; then
  echo "echarts-$version.tgz: integrity $got, expected $integrity; removed" >&2
  rm -f "$tgz"
  exit 1
fi
tar -xzf "$tgz" -O package/dist/echarts.min.js > "$dest/echarts.min.js.tmp"
tar -xzf "$tgz" -O package/LICENSE > "$dest/echarts-LICENSE"
mv "$dest/echarts.min.js.tmp" "$dest/echarts.min.js"
echo "$version" > "$dest/echarts.version"
