#!/bin/sh
# Render recstop's Redis ACL file: each {{password:<role>}} of the template becomes
# #<SHA-256 of the role's password>, so the rendered file holds no password.
#
#   deploy/redis-acl-render.sh deploy/redis-users.acl /data/users.acl
#
# A role's password is read from the file RECSTOP_REDIS_PASSWORD_<ROLE>_FILE names (its trailing
# newlines are not part of it), else from RECSTOP_REDIS_PASSWORD_<ROLE>; <ROLE> is the user's name
# upper-cased, '-' as '_': WORKER, PRODUCER, AUDIT_SINK, MONITOR, ADMIN (required), REPLICA,
# SENTINEL (optional: a user without a password is left out). Nothing is printed but what is
# missing; the output file is written whole (mode 600) or not at all.
set -eu
if [ "$#" -ne 2 ]; then
    echo "usage: $0 TEMPLATE OUT" >&2
    exit 2
fi
template=$1
out=$2
optional=" replica sentinel "
umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: >"$tmp"
while IFS= read -r line || [ -n "$line" ]; do
    role=$(printf '%s\n' "$line" | sed -n 's/.*{{password:\([a-z-]*\)}}.*/\1/p')
    if [ -z "$role" ]; then
        printf '%s\n' "$line" >>"$tmp"
        continue
    fi
    var=RECSTOP_REDIS_PASSWORD_$(printf '%s' "$role" | tr 'a-z-' 'A-Z_')
    file=$(eval "printf '%s' \"\${${var}_FILE:-}\"")
    if [ -n "$file" ]; then
        password=$(cat "$file")
    else
        password=$(eval "printf '%s' \"\${${var}:-}\"")
    fi
    if [ -z "$password" ]; then
        case $optional in
        *" $role "*) continue ;;
        esac
        echo "$0: no password for the Redis user $role: set ${var}_FILE or $var" >&2
        exit 1
    fi
    hash=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
    printf '%s\n' "$line" | sed "s/{{password:$role}}/#$hash/" >>"$tmp"
done <"$template"
mv "$tmp" "$out"
trap - EXIT
