#!/usr/bin/env bash
# Installs everything the lab and the tests need on a fresh Debian 12 machine (run as root).
# Idempotent: each step checks before it does work, so `make run` / `make test` can call it always.
#
#   system packages   redis-server, redis-sentinel, debootstrap, sip-tester (SIPp), baresip-core (a
#                     second SIP stack for the agents' phones in the tests), espeak-ng (the
#                     lab's spoken prompts, synthesized at lab set-up; no audio file is committed),
#                     chromium, chromium-driver and a Chinese font (the sidecar's pages tested
#                     in a real browser), npm (fetches the analysis page's ECharts, checked)
#   Asterisk 22       native `asterisk` if present, else a Debian-unstable root file system built
#                     once with debootstrap and cached OUTSIDE the repository ($HOTLINE_ROOTFS)
#   Python            a venv in .venv with the project installed editable, test extra included;
#                     then the matter recommender's model, trained from config/corpus (var/)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rootfs=${HOTLINE_ROOTFS:-/var/cache/hotline-link/asterisk-rootfs}
venv=${HOTLINE_VENV:-$here/.venv}
py=${PYTHON:-python3}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

need_pkgs=()
for pair in redis-server:redis-server redis-sentinel:redis-sentinel debootstrap:debootstrap sipp:sip-tester \
            espeak-ng:espeak-ng baresip:baresip-core chromium:chromium chromedriver:chromium-driver \
            npm:npm; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# A Chinese font, so that the pages' screenshots show 中文 and not empty boxes.
fc-list 2>/dev/null | grep -qiE 'wenquanyi|noto (sans|serif) cjk' || need_pkgs+=(fonts-wqy-microhei)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # The Debian packages start a system-wide redis on :6379 and a sentinel on :26379; the lab runs
  # its own per session.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
    systemctl disable --now redis-sentinel >/dev/null 2>&1 || true
  fi
fi

mirror() {
  # The mirror the machine's own apt sources name (deb822 or one-line format).
  local m
  m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -E 'debian/?$|debian ' | grep -v security | head -1 \
      | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//')
  echo "${m:-http://deb.debian.org/debian}"
}

if command -v asterisk >/dev/null 2>&1; then
  log "native asterisk found: $(command -v asterisk)"
elif [ -x "$rootfs/usr/sbin/asterisk" ] && [ -f "$rootfs/.hotline-ready" ]; then
  log "cached Asterisk root file system: $rootfs"
else
  log "building the Asterisk root file system in $rootfs (Debian sid, about a minute)"
  rm -rf "$rootfs.tmp"
  mkdir -p "$(dirname "$rootfs")"
  debootstrap --variant=minbase --include=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm,asterisk-moh-opsound-gsm \
    sid "$rootfs.tmp" "$(mirror)" >"$(dirname "$rootfs")/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $(dirname "$rootfs")/debootstrap.log"; tail -20 "$(dirname "$rootfs")/debootstrap.log" >&2; exit 1; }
  # Asterisk runs as root inside the chroot; Debian ships these dirs owned by the asterisk user.
  for d in etc/asterisk var/lib/asterisk var/spool/asterisk var/log/asterisk var/cache/asterisk usr/share/asterisk; do
    [ -e "$rootfs.tmp/$d" ] && chown -R root:root "$rootfs.tmp/$d"
  done
  mkdir -p "$rootfs.tmp/var/run/asterisk"
  "$rootfs.tmp/usr/sbin/asterisk" -V >/dev/null 2>&1 || chroot "$rootfs.tmp" asterisk -V >&2
  touch "$rootfs.tmp/.hotline-ready"
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
  log "built: $(chroot "$rootfs" asterisk -V)"
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.installed-$(cat "$here/pyproject.toml" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing the project into $venv"
  "$venv/bin/pip" install -q -e "$here[test]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
# The analysis page's charts (Apache ECharts from the npm registry, checked, into var/vendor/).
bash "$here/scripts/vendor-echarts.sh"
# The matter recommender's model, built from config/corpus (only when the corpus, the catalog or
# the feature code changed). The corpus's sentence embeddings are cached outside the repository
# ($HOTLINE_EMBEDDING_CACHE): about 7 minutes on two cores the first time, then seconds.
"$venv/bin/hotline-link" recommend --train
log "ready"
