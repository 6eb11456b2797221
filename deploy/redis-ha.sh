#!/bin/sh
# Starts one node of recstop's Sentinel layout: a master and two replicas (redis.conf), three sentinels
# (sentinel.conf). docker-compose.yml and kubernetes/redis.yaml run it; docs/operations.md explains it.
#
#   redis-ha.sh redis    ME FIRST_MASTER SENTINEL...   a Redis node
#   redis-ha.sh sentinel ME FIRST_MASTER SENTINEL...   a sentinel
#
# ME is the name the others reach this node by; FIRST_MASTER the node that is master when no sentinel
# knows better (the very first start); SENTINEL... every sentinel. A node asks the sentinels which node
# is master now, so a restarted old master comes back as a replica of the new one instead of a second
# master with stale data. A name may carry its port (NAME:PORT; by default REDIS_PORT, 6379, for Redis
# nodes and SENTINEL_PORT, 26379, for sentinels; this node listens on its role's). A Redis node first
# renders the ACL users (redis-users.acl through redis-acl-render.sh, from RECSTOP_REDIS_PASSWORD_<ROLE>
# or its _FILE) into $REDIS_HA_DATA/users.acl, its aclfile; a replica follows its master as the user
# `replica`, a sentinel watches the nodes as the user `sentinel` (RECSTOP_REDIS_PASSWORD_REPLICA and
# RECSTOP_REDIS_PASSWORD_SENTINEL, required here). The sentinels' own password, for clients and each
# other, is RECSTOP_REDIS_SENTINEL_PASSWORD. REDIS_HA_CONF (the directory of redis.conf, sentinel.conf,
# redis-users.acl, redis-acl-render.sh) and REDIS_HA_DATA default to /usr/local/etc/redis and /data.
set -eu
: "${RECSTOP_REDIS_SENTINEL_PASSWORD:?set RECSTOP_REDIS_SENTINEL_PASSWORD, the sentinels' own password}"

role=$1 me=$2 first=$3
shift 3
conf=${REDIS_HA_CONF:-/usr/local/etc/redis}
data=${REDIS_HA_DATA:-/data}
redis_port=${REDIS_PORT:-6379}
sentinel_port=${SENTINEL_PORT:-26379}
name=recstop # the master name of sentinel.conf (RECSTOP_REDIS_SENTINEL_MASTER)

# A user's password: the file RECSTOP_REDIS_PASSWORD_<ROLE>_FILE names, else RECSTOP_REDIS_PASSWORD_<ROLE>.
password_of() {
    var=RECSTOP_REDIS_PASSWORD_$1
    file=$(eval "printf '%s' \"\${${var}_FILE:-}\"")
    if [ -n "$file" ]; then password=$(cat "$file"); else password=$(eval "printf '%s' \"\${${var}:-}\""); fi
    if [ -z "$password" ]; then
        echo "redis-ha: no password for the Redis user $1: set ${var}_FILE or $var" >&2
        exit 1
    fi
    printf '%s' "$password"
}

host_of() { echo "${1%%:*}"; }
port_of() { case "$1" in *:*) echo "${1##*:}" ;; *) echo "$2" ;; esac; }

# "HOST PORT" of the master the sentinels name now (the first that answers), else of FIRST_MASTER.
current_master() {
    for sentinel in "$@"; do
        answer=$(REDISCLI_AUTH="$RECSTOP_REDIS_SENTINEL_PASSWORD" redis-cli --no-auth-warning -h "$(host_of "$sentinel")" \
            -p "$(port_of "$sentinel" "$sentinel_port")" --raw SENTINEL get-master-addr-by-name "$name" \
            2>/dev/null | tr '\n' ' ') || true
        set -- $answer "" ""
        case "$1:$2" in
            *[!A-Za-z0-9.:-]*) ;;
            ?*:[0-9]*) echo "$1 $2"; return 0 ;;
        esac
    done
    echo "$(host_of "$first") $(port_of "$first" "$redis_port")"
}

case "$role" in
    redis)
        replica_password=$(password_of REPLICA)
        password_of SENTINEL >/dev/null
        sh "$conf/redis-acl-render.sh" "$conf/redis-users.acl" "$data/users.acl"
        master=$(current_master "$@")
        set -- "$conf/redis.conf" --dir "$data" --aclfile "$data/users.acl" --port "$redis_port" \
            --replica-announce-ip "$me" --masteruser replica --masterauth "$replica_password"
        if [ "$master" = "$me $redis_port" ]; then
            echo "redis-ha: $me starts as the master"
        else
            echo "redis-ha: $me starts as a replica of $master"
            set -- "$@" --replicaof ${master}
        fi
        exec redis-server "$@"
        ;;
    sentinel)
        sentinel_password=$(password_of SENTINEL)
        # Sentinel rewrites its file as it learns: a restarted sentinel keeps what it knew.
        if [ ! -s "$data/sentinel.conf" ]; then
            master=$(current_master "$@") # a name not resolvable yet is fine: sentinel retries it
            sed -e "s/^sentinel monitor $name [^ ]* [0-9]* /sentinel monitor $name $master /" \
                -e "s/^port .*/port $sentinel_port/" -e "s|^dir .*|dir $data|" \
                "$conf/sentinel.conf" >"$data/sentinel.conf.new"
            mv "$data/sentinel.conf.new" "$data/sentinel.conf"
            echo "redis-ha: sentinel $me watches master $master"
        fi
        exec redis-server "$data/sentinel.conf" --sentinel \
            --sentinel announce-ip "$me" --sentinel auth-user "$name" sentinel \
            --sentinel auth-pass "$name" "$sentinel_password" \
            --requirepass "$RECSTOP_REDIS_SENTINEL_PASSWORD" --sentinel sentinel-pass "$RECSTOP_REDIS_SENTINEL_PASSWORD"
        ;;
    *)
        echo "usage: redis-ha.sh redis|sentinel ME FIRST_MASTER SENTINEL..." >&2
        exit 2
        ;;
esac
