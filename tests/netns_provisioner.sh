#!/bin/sh
# A real provisioner for the dynamic worker tests: each worker it makes is a network
# namespace of its own, joined to this host by a veth pair, with its own OpenSSH sshd
# and host key, at a new address each time.
#
#   netns_provisioner.sh STATE create NAME   prints {"host", "port", "user", "key", "host_key"}
#   netns_provisioner.sh STATE destroy NAME
#
# STATE is a folder the test made: `tag` (a number 0-15 that keeps this run's namespaces
# and addresses apart from another's), `client_key` (the private key Workdeck logs in
# with; its .pub beside it), and `mode`, read at each call: "fail", "hang" or "lie" (a
# host key other than the worker's) make it misbehave on purpose. `made` lists every
# worker made, `destroyed` every one destroyed, one per line.
set -eu
state=$1 action=$2 name=$3
tag=$(cat "$state/tag")
mode=$(cat "$state/mode" 2>/dev/null || true)
here=$state/workers/$name

case $action in
create)
    case $mode in
    fail) echo "no capacity left in the test region" >&2; exit 3 ;;
    hang) sleep 600 ;;
    esac
    # A new number for each life, taken under a lock (creations run at once).
    n=$(flock "$state/lock" sh -c 'n=$(( $(cat "$1" 2>/dev/null || echo 0) + 1 )); echo $n > "$1"; echo $n' sh "$state/counter")
    ns=wdp$tag-$n outer=wdp${tag}h$n inner=wdp${tag}n$n
    net=172.$((16 + tag)).$n
    mkdir -p "$here"
    echo "$ns $outer" > "$here/netns"
    ip netns add "$ns"
    ip link add "$outer" type veth peer name "$inner"
    ip link set "$inner" netns "$ns"
    ip addr add "$net.1/24" dev "$outer"
    ip link set "$outer" up
    ip netns exec "$ns" ip addr add "$net.2/24" dev "$inner"
    ip netns exec "$ns" ip link set "$inner" up
    ip netns exec "$ns" ip link set lo up
    ssh-keygen -q -t ed25519 -N "" -C "$name" -f "$here/host_key" </dev/null
    cut -d' ' -f1,2 "$state/client_key.pub" > "$here/authorized_keys"
    mkdir -p /run/sshd
    cat > "$here/sshd_config" <<EOF
ListenAddress $net.2:22
HostKey $here/host_key
PidFile $here/sshd.pid
AuthorizedKeysFile $here/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
EOF
    # sshd goes to the background on its own, its output away from ours.
    ip netns exec "$ns" /usr/sbin/sshd -f "$here/sshd_config" -E "$here/sshd.log"
    i=0
    until ssh-keyscan -T 1 -t ed25519 "$net.2" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "sshd in $ns did not answer" >&2; exit 4; }
        sleep 0.1
    done
    host_key=$(cut -d' ' -f1,2 "$here/host_key.pub")
    if [ "$mode" = lie ]; then
        ssh-keygen -q -t ed25519 -N "" -f "$here/other_key" </dev/null
        host_key=$(cut -d' ' -f1,2 "$here/other_key.pub")
    fi
    echo "$name $net.2" >> "$state/made"
    printf '{"host": "%s", "port": 22, "user": "%s", "key": "%s", "host_key": "%s"}\n' \
        "$net.2" "$(id -un)" "$state/client_key" "$host_key"
    ;;
destroy)
    [ "$mode" = hang ] && sleep 600
    if [ -d "$here" ]; then
        read -r ns outer < "$here/netns"
        # sshd and every session it forked (each in a session of its own).
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip link del "$outer" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "$here"
    fi
    echo "$name" >> "$state/destroyed"
    ;;
*)
    echo "usage: $0 STATE create|destroy NAME" >&2; exit 2 ;;
esac
