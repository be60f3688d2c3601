# shellcheck shell=bash
# find_mirror: print the Debian mirror of this machine's apt sources (the first URI that
# is not a security archive), or nothing.  Sourced by build-node-root and build-image, so
# no mirror host is ever written into the repository.
find_mirror() {
    local uri
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s !~ /security/ && u !~ /security/) { print u; exit } u=""; s=""; next }
            /^URIs:/   { u=$2 }
            /^Suites:/ { s=$0 }
            END { if (u != "" && s !~ /security/ && u !~ /security/) print u }
        ' /etc/apt/sources.list.d/debian.sources | head -n1)
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    fi
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri=$(awk '$1 == "deb" {
                  i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                  if ($i !~ /security/ && $(i+1) !~ /security/) { print $i; exit }
              }' "$f")
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
}
