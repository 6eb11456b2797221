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
# nodes and SENTINEL_PORT, 26379, for sentinels; this node listens on its role's). Passwords come from
# the environment: REDIS_PASSWORD (the Redis nodes; sentinels and replicas authenticate with it) and
# SENTINEL_PASSWORD (the sentinels' own). REDIS_HA_CONF (the directory of redis.conf and sentinel.conf)
# and REDIS_HA_DATA default to the containers' /usr/local/etc/redis and /data.
set -eu

role=$1 me=$2 first=$3
shift 3
conf=${REDIS_HA_CONF:-/usr/local/etc/redis}
data=${REDIS_HA_DATA:-/data}
redis_port=${REDIS_PORT:-6379}
sentinel_port=${SENTINEL_PORT:-26379}
name=recstop # the master name of sentinel.conf (RECSTOP_REDIS_SENTINEL_MASTER)

host_of() { echo "${1%%:*}"; }
port_of() { case "$1" in *:*) echo "${1##*:}" ;; *) echo "$2" ;; esac; }

# "HOST PORT" of the master the sentinels name now (the first that answers), else of FIRST_MASTER.
current_master() {
    for sentinel in "$@"; do
        answer=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli --no-auth-warning -h "$(host_of "$sentinel")" \
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
        master=$(current_master "$@")
        set -- "$conf/redis.conf" --dir "$data" --port "$redis_port" --replica-announce-ip "$me" \
            --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"
        if [ "$master" = "$me $redis_port" ]; then
            echo "redis-ha: $me starts as the master"
        else
            echo "redis-ha: $me starts as a replica of $master"
            set -- "$@" --replicaof ${master}
        fi
        exec redis-server "$@"
        ;;
    sentinel)
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
            --sentinel announce-ip "$me" --sentinel auth-pass "$name" "$REDIS_PASSWORD" \
            --requirepass "$SENTINEL_PASSWORD" --sentinel sentinel-pass "$SENTINEL_PASSWORD"
        ;;
    *)
        echo "usage: redis-ha.sh redis|sentinel ME FIRST_MASTER SENTINEL..." >&2
        exit 2
        ;;
esac
