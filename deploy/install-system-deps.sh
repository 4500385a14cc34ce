#!/usr/bin/env bash
# Installs the system tools the tests and `make dev` need, and only those that are missing:
# Java 17+ and Maven (the local Kafka broker), Java 21+ (Keycloak, for the interoperability test),
# the PostgreSQL server and an OS user to run it, kcat, Prometheus (promtool, and the server the tests
# start on a free port), and Debian's headless Chromium with a font for the console's browser tests
# (Playwright drives it; it never downloads a browser of its own). Safe to run again; with everything
# present it only looks.
set -euo pipefail

missing_packages=()
missing_things=()

need() { # need <what is missing> <apt package>
    missing_things+=("$1")
    missing_packages+=("$2")
}

java_major() {
    # `java -version` prints e.g. `openjdk version "17.0.15" ...` or, before Java 9, `"1.8.0_402"`.
    local version
    version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
    version=${version#1.}
    version=${version%%[.+_-]*}
    echo "${version:-0}"
}

postgres_bin_dir() {
    local dir
    if command -v pg_ctl >/dev/null 2>&1; then
        dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
        if [[ -x $dir/initdb && -x $dir/postgres ]]; then
            echo "$dir"
            return 0
        fi
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! command -v java >/dev/null 2>&1 || (( $(java_major) < 17 )); then
    need "Java 17+ runtime" openjdk-17-jre-headless
fi
command -v mvn >/dev/null 2>&1 || need "Maven" maven
newest_jvm_major() {
    # The newest Java under /usr/lib/jvm (or JAVA_HOME): Keycloak picks it the same way.
    local best=0 home major
    for home in ${JAVA_HOME:-} /usr/lib/jvm/*; do
        [[ -x $home/bin/java ]] || continue
        major=$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
        major=${major#1.}
        major=${major%%[.+_-]*}
        (( ${major:-0} > best )) && best=${major:-0}
    done
    echo "$best"
}
if (( $(newest_jvm_major) < 21 )); then
    if apt-cache show openjdk-21-jre-headless >/dev/null 2>&1; then
        need "Java 21+ runtime (Keycloak)" openjdk-21-jre-headless
    else
        echo "warning: no Java 21+ for Keycloak and none in the package lists; install one under /usr/lib/jvm" >&2
    fi
fi
postgres_bin_dir >/dev/null || need "PostgreSQL server" postgresql
command -v kcat >/dev/null 2>&1 || need "kcat" kcat
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need "Prometheus server and promtool" prometheus
[[ -x /usr/lib/chromium/chromium-headless-shell ]] || need "headless Chromium" chromium-headless-shell
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need "a font for Chromium" fonts-dejavu-core
user_missing=false
id -u postgres >/dev/null 2>&1 || user_missing=true

if (( ${#missing_packages[@]} == 0 )) && ! $user_missing; then
    exit 0
fi

if (( EUID != 0 )); then
    for thing in "${missing_things[@]}"; do
        echo "missing: $thing" >&2
    done
    $user_missing && echo "missing: OS user 'postgres' (PostgreSQL refuses to run as root)" >&2
    if (( ${#missing_packages[@]} > 0 )); then
        echo "as root, run: apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
    fi
    echo "or run this script as root: sudo bash $0" >&2
    exit 1
fi

if (( ${#missing_packages[@]} > 0 )); then
    log=$(mktemp)
    temporary_files=("$log")
    trap 'rm -f "${temporary_files[@]}"' EXIT
    # Package scripts would start the PostgreSQL and Prometheus daemons; forbid that for this run.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        temporary_files+=(/usr/sbin/policy-rc.d)
    fi

    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q >"$log" 2>&1 ||
        ! apt-get install -y -q --no-install-recommends "${missing_packages[@]}" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "apt-get failed installing: ${missing_packages[*]}" >&2
        exit 1
    fi
    for i in "${!missing_packages[@]}"; do
        echo "installed: ${missing_things[$i]} (${missing_packages[$i]})"
    done

    if [[ " ${missing_packages[*]} " == *" prometheus "* ]]; then
        # The tests start their own server when they need one; the package's daemon would hold port 9090.
        if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
            systemctl disable --now prometheus >/dev/null 2>&1 || true
        else
            update-rc.d prometheus disable >/dev/null 2>&1 || true
            service prometheus stop >/dev/null 2>&1 || true
        fi
        if pids=$(pgrep -x prometheus); then
            kill $pids
            echo "stopped the Prometheus server the package started"
        fi
    fi
fi

if ! id -u postgres >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    echo "installed: OS user 'postgres' (PostgreSQL refuses to run as root)"
fi
