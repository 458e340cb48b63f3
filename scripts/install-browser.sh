#!/usr/bin/env bash
# Sourced by scripts/test.sh: what the console's browser test needs (idempotently): Debian's
# Chromium, and Playwright's driver library (playwright-core, no bundled browsers) from npm
# under ~/.cache/openclaw/browser. Exports OPENCLAW_PLAYWRIGHT_DIR and OPENCLAW_CHROMIUM.
browser_dir="$HOME/.cache/openclaw/browser"
need_apt=""
command -v chromium >/dev/null 2>&1 || need_apt="$need_apt chromium"
command -v node >/dev/null 2>&1 || need_apt="$need_apt nodejs npm"
if [ -n "$need_apt" ]; then
    echo "openclaw: installing the browser test's prerequisites:$need_apt" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need_apt >&2
fi
if [ ! -e "$browser_dir/node_modules/playwright-core/package.json" ]; then
    echo "openclaw: installing playwright-core into $browser_dir" >&2
    mkdir -p "$browser_dir"
    # The version is pinned: the test drives Chromium through its API.
    (cd "$browser_dir" && npm install --silent --no-audit --no-fund playwright-core@1.57.0 >&2)
fi
export OPENCLAW_PLAYWRIGHT_DIR="$browser_dir/node_modules"
export OPENCLAW_CHROMIUM="$(command -v chromium)"
