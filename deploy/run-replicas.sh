#!/usr/bin/env bash
# make run-replicas: two replicas of each service on the local PostgreSQL,
# behind HAProxy (deploy/haproxy.cfg) on the usual ports — contacts
# http://localhost:8081, calendar :8082, notifications :8083. Needs
# PostgreSQL (REPLICAS_DATABASE_URL, default postgres://postgres@127.0.0.1:5432)
# and haproxy. Each service gets a database of its own, made if missing:
# syndic_contacts, syndic_calendar, syndic_notifications. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${REPLICAS_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { echo "run-replicas: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
PATH="$PATH:/usr/sbin"

for svc in contacts calendar notifications; do
	if ! psql "$base/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'syndic_$svc'" | grep -q 1; then
		psql "$base/postgres" -qc "CREATE DATABASE syndic_$svc"
	fi
done

declare -A replica=([contacts]="9081 9181" [calendar]="9082 9182" [notifications]="9083 9183")
declare -A front=([contacts]=8081 [calendar]=8082 [notifications]=8083)
pids=()
stop() {
	trap - INT TERM EXIT
	[ ${#pids[@]} -gt 0 ] || return 0
	kill -TERM "${pids[@]}" 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10; do # up to 10 s for graceful shutdowns
		kill -0 "${pids[@]}" 2>/dev/null || break
		sleep 1
	done
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# start NAME BINARY PORT ENV…: one replica, its log lines prefixed with its name.
start() {
	local name=$1 bin=$2 port=$3
	shift 3
	env -i PATH="$PATH" PORT="$port" "$@" "bin/$bin" > >(sed -u "s/^/$name | /") 2>&1 &
	pids+=($!)
	echo "$name  pid $!  http://localhost:$port"
}

for svc in notifications contacts calendar; do
	slot=1
	for port in ${replica[$svc]}; do
		common=(DATABASE_URL="$base/syndic_$svc?sslmode=disable" BASE_URL="http://localhost:${front[$svc]}" LOG_LEVEL=info)
		case $svc in
		calendar) start "calendar$slot" calendar "$port" "${common[@]}" FOLLOWER_ID="calendar$slot" \
			CONTACTS_FEED_URL=http://localhost:8081/feed NOTIFICATIONS_URL=http://localhost:8083 ;;
		*) start "$svc$slot" "$svc" "$port" "${common[@]}" ;;
		esac
		slot=$((slot + 1))
	done
done

env -i PATH="$PATH" \
	CONTACTS_BIND=127.0.0.1:8081 CONTACTS_1=127.0.0.1:9081 CONTACTS_2=127.0.0.1:9181 \
	CALENDAR_BIND=127.0.0.1:8082 CALENDAR_1=127.0.0.1:9082 CALENDAR_2=127.0.0.1:9182 \
	CALENDAR_3=127.0.0.1:9282 CALENDAR_4=127.0.0.1:9382 \
	NOTIFICATIONS_BIND=127.0.0.1:8083 NOTIFICATIONS_1=127.0.0.1:9083 NOTIFICATIONS_2=127.0.0.1:9183 \
	haproxy -db -f deploy/haproxy.cfg > >(sed -u "s/^/haproxy | /") 2>&1 &
pids+=($!)

cat <<'MSG'

Through HAProxy: contacts http://localhost:8081  calendar http://localhost:8082  notifications http://localhost:8083
Which calendar follows:  curl -s localhost:9082/api/sync localhost:9182/api/sync | grep -o '"follower":"[a-z]*"'
Kill the active one (kill -9 PID from the list above): the other takes over within FOLLOWER_LEASE (5 s).
Ctrl-C stops everything.
MSG
wait
