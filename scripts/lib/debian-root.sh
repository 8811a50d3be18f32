# shellcheck shell=bash
# Helpers for building Debian 12 roots from the host's own package sources, shared by
# scripts/pristine-check.sh and scripts/v2host-image.sh. Source it; it defines functions only.

# The host's Debian sources as "URI SUITE COMPONENTS..." lines (one-line and deb822 formats).
host_debian_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                line = $i " " $(i + 1)
                for (j = i + 2; j <= NF && $j !~ /^#/; j++) line = line " " $j
                print line
             }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush(   n, m, a, b, u, s) {
                if (types ~ /(^| )deb( |$)/ && enabled !~ /^no/) {
                    n = split(uris, u, " "); m = split(suites, s, " ")
                    for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b], comps
                }
                types = uris = suites = comps = enabled = ""
             }
             /^[ \t]*#/ { next }
             /^[ \t]*$/ { flush(); next }
             /^[A-Za-z-]+:/ {
                key = tolower(substr($0, 1, index($0, ":") - 1))
                val = substr($0, index($0, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
                if (key == "types") types = val; else if (key == "uris") uris = val
                else if (key == "suites") suites = val; else if (key == "components") comps = val
                else if (key == "enabled") enabled = tolower(val)
             }
             END { flush() }' "$f"
    done
}

# The host's sources for SUITE and its -updates and -security suites, each line once.
suite_sources() {  # $1: suite
    host_debian_sources | awk -v s="$1" '$2 == s || $2 == s "-updates" || $2 == s "-security"' \
        | awk '!seen[$0]++'
}

# The first mirror URI of SUITE in SOURCES (the output of suite_sources).
suite_mirror() {  # $1: suite, $2: sources
    awk -v s="$1" '$2 == s { print $1; exit }' <<<"$2"
}

# Install debootstrap on the host if it has none; non-zero if that fails.
ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    printf '%s: installing debootstrap on the host\n' "${PROG:-cvbench}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap \
        >/dev/null
}

# Whether an apt configuration file sets only Acquire:: options (proxy, validity checks).
only_acquire() {
    awk '/^[ \t]*($|#|\/\/)/ { next } /^[ \t]*Acquire::/ { n++; next } { bad = 1 }
         END { exit !(n > 0 && !bad) }' "$1"
}

# Give ROOT the host's network settings, and nothing else of the host: the Debian sources
# (SOURCES lines), apt's Acquire:: options, resolv.conf (unless NO_RESOLV is set), a hosts file,
# locally added CA certificates and /etc/pip.conf.
copy_network_settings() {  # $1: root, $2: sources
    local root="$1" sources="$2" f
    if [ -n "$sources" ]; then
        awk '{ printf "deb %s", $1; for (i = 2; i <= NF; i++) printf " %s", $i; print "" }' \
            <<<"$sources" >"$root/etc/apt/sources.list"
    fi
    for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
        if [ -f "$f" ] && [ ! -e "$root$f" ] && only_acquire "$f"; then cp "$f" "$root$f"; fi
    done
    if [ -z "${NO_RESOLV:-}" ]; then
        rm -f "$root/etc/resolv.conf"
        cat /etc/resolv.conf >"$root/etc/resolv.conf"
    fi
    [ -s "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi
    [ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$root/etc/pip.conf"
}
