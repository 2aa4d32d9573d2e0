# shellcheck shell=bash
# A caching mirror for tests and benchmarks: real nginx (Debian's package) running
# server/nginx-cache-mirror.conf itself, with its names, paths and addresses replaced
# (docs/mirrors.md). Started in the background, stopped by its pid.
#
# mirror_start DIR LISTEN UPSTREAM CLIENT_CERT CLIENT_KEY [NETNS]
#   DIR          its configuration, cache and logs (DIR/logs/access.log)
#   LISTEN       ADDRESS:PORT it listens on
#   UPSTREAM     the server's base URL (https://127.0.0.1:PORT)
#   CLIENT_CERT  the mirror's own certificate to the server (`provisionerctl ca issue mirror NAME`)
#   NETNS        a network namespace to run it in (optional)
# Needs REPO and TLS (the cluster's CA and a server certificate nginx presents to agents).
# Sets MIRROR_PID.

MIRROR_PID=

mirror_start() {
    local dir=$1 listen=$2 upstream=$3 cert=$4 key=$5 netns=${6:-}
    local run=()
    if [[ -n $netns ]]; then run=(ip netns exec "$netns"); fi
    mkdir -p "$dir/cache" "$dir/logs"
    sed -e "s|/var/cache/nginx/provisioner|$dir/cache|" \
        -e "s|listen 8443 ssl;|listen $listen ssl;|" \
        -e "s|server_name mirror1.example.net;|server_name localhost;|" \
        -e "s|/etc/nginx/provisioner/mirror1.pem|$TLS/server.pem|" \
        -e "s|/etc/nginx/provisioner/mirror1-key.pem|$TLS/server-key.pem|" \
        -e "s|/etc/nginx/provisioner/mirror1-client.pem|$cert|" \
        -e "s|/etc/nginx/provisioner/mirror1-client-key.pem|$key|" \
        -e "s|/etc/nginx/provisioner/ca.pem|$TLS/ca.pem|" \
        -e "s|proxy_ssl_name                prov.example.net;|proxy_ssl_name localhost;|" \
        -e "s|server prov.example.net:8443;|server ${upstream#https://};|" \
        "$REPO/server/nginx-cache-mirror.conf" > "$dir/mirror.conf"
    cat > "$dir/nginx.conf" << CONF
user root;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/client_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
    include $dir/mirror.conf;
}
CONF
    "${run[@]}" nginx -t -c "$dir/nginx.conf" -p "$dir" 2>&1 | tail -n 1
    "${run[@]}" nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' &
    MIRROR_PID=$!
    for _ in $(seq 1 50); do
        "${run[@]}" curl -ks -o /dev/null "https://$listen/" && break
        sleep 0.1
    done
    echo "nginx mirror: pid $MIRROR_PID, https://$listen"
}

mirror_stop() {
    if [[ -n $MIRROR_PID ]]; then
        kill "$MIRROR_PID" 2> /dev/null
        wait "$MIRROR_PID" 2> /dev/null
    fi
    MIRROR_PID=
    return 0
}
