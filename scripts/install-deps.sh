#!/usr/bin/env bash
# Install every Debian and npm package the build, the tests and the
# benchmark need. Idempotent and fast when everything is already there:
# one dpkg-query call decides whether apt-get runs at all.
#   scripts/install-deps.sh            build + tests
#   scripts/install-deps.sh bench      also the benchmark's packages
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(
	# build
	gcc make pkg-config
	libevent-dev libcurl4-openssl-dev libnghttp2-dev libssl-dev libyaml-dev libsqlite3-dev libpcre2-dev
	# PostgreSQL store: libpq to build, a server for its tests
	postgresql libpq-dev
	# tests: unit framework, fuzzing (clang's libFuzzer), sanitizer runtime,
	# integration (pytest, openssl CLI for test certificates, curl CLI)
	libcmocka-dev libcjson-dev clang libclang-rt-14-dev valgrind
	python3 python3-pytest python3-cryptography openssl curl ca-certificates iproute2
)
if [ "${1:-}" = bench ]; then
	pkgs+=(wrk nginx-light libjansson-dev libcjson-dev libyajl-dev libuv1-dev linux-perf)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js: the machine's own node (>= 18) is used when present; Debian's
# otherwise.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "install-deps: installing nodejs and npm"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq nodejs npm >/dev/null
fi

npm_install() { # dir: install from the lock file unless already done
	local d=$1
	[ -f "$d/package.json" ] || return 0
	if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
		echo "install-deps: npm ci in $d"
		(cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
	fi
}
npm_install tests/sdk
if [ "${1:-}" = bench ]; then npm_install bench; fi
exit 0
