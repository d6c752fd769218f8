#!/usr/bin/env bats
# masakari-notify against the fake Keystone + masakari (tests/fakes/masakari),
# which checks masakari's request schema and records every request.
bats_require_minimum_version 1.5.0

UUID=96ab1c42-668c-4f2d-8689-afa3301d4ee9
PASS='Zq8#sekret-Pa55w0rd'

setup() {
	load common
	pvekit_setup
	HOOK=$TOP/share/hooks/masakari-notify
	printf '%s\n' "$PASS" >"$T/pw"
	chmod 600 "$T/pw"
	export PVEKIT_EVENT=qga-failed PVEKIT_VMID=101 PVEKIT_UUID=$UUID PVEKIT_NODE=pve1 \
		PVEKIT_TIME=2026-05-01T12:00:00.123456
}
teardown() { pvekit_teardown; }

# fake [ARGS...]: starts the fake, writes a 0600 config for it to $T/m.conf.
fake() {
	start_bg masakari --port-file "$T/port" --log "$T/req.log" --password-file "$T/pw" \
		--hosts pve1 "$@"
	wait_until 10 test -s "$T/port"
	PORT=$(cat "$T/port")
	cat >"$T/m.conf" <<-EOF
	# test config
	auth_url=http://127.0.0.1:$PORT/v3
	username=masakari
	password=$PASS
	project_name=service
	retries=3
	retry_interval=0.1
	timeout=5
	EOF
	chmod 600 "$T/m.conf"
}

requests() { jq -c "select(.path | test(\"$1\"))" "$T/req.log"; }

@test "masakari-notify: token flow, then the exact VM notification" {
	fake
	run -0 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"masakari notified (QEMU_GUEST_AGENT_ERROR, instance $UUID, host pve1)"* ]]
	[ "$(wc -l <"$T/req.log")" -eq 2 ]
	auth=$(sed -n 1p "$T/req.log")
	jq -e '.method == "POST" and .path == "/v3/auth/tokens" and .status == 201
		and .headers["content-type"] == "application/json"' <<<"$auth"
	jq -e --arg pw "$PASS" '.body | fromjson | .auth == {identity: {methods: ["password"],
		password: {user: {name: "masakari", password: $pw, domain: {name: "Default"}}}},
		scope: {project: {name: "service", domain: {name: "Default"}}}}' <<<"$auth"
	n=$(sed -n 2p "$T/req.log")
	# the catalog's public instance-ha endpoint, the token from X-Subject-Token
	jq -e '.method == "POST" and .path == "/v1/8a1d5b2c4f6e4d3ab1c2d3e4f5a6b7c8/notifications"
		and .status == 202 and (.headers["x-auth-token"] | startswith("gAAAA"))
		and .headers["content-type"] == "application/json"
		and (.headers | has("openstack-api-version") | not)' <<<"$n"
	jq -e --arg u "$UUID" '.body | fromjson == {notification: {type: "VM", hostname: "pve1",
		generated_time: "2026-05-01T12:00:00.123456", payload: {event: "QEMU_GUEST_AGENT_ERROR",
		instance_uuid: $u, vir_domain_event: "STOPPED_FAILED"}}}' <<<"$n"
}

@test "masakari-notify: masakari_url and hostname from the config" {
	fake
	printf 'masakari_url=http://127.0.0.1:%s/v1/\nhostname=node-a.example\n' "$PORT" >>"$T/m.conf"
	run -1 --separate-stderr "$HOOK" -c "$T/m.conf"
	# not a host of any segment: 400, given up at once
	[[ $stderr == *"refused the notification (400): Host with name node-a.example could not be found."* ]]
	requests notifications >"$T/n"
	[ "$(wc -l <"$T/n")" -eq 1 ]
	jq -e '.path == "/v1/notifications" and (.body | fromjson | .notification.hostname) == "node-a.example"' "$T/n"
}

@test "masakari-notify: retries on 503, like masakari-monitors" {
	fake --fail 2:503
	run -0 "$HOOK" -c "$T/m.conf"
	requests notifications >"$T/n"
	[ "$(wc -l <"$T/n")" -eq 3 ]
	[ "$(jq -r .status "$T/n" | tr '\n' ' ')" = "503 503 202 " ]
}

@test "masakari-notify: gives up after the retries (exit 75)" {
	fake --fail 10:503
	run -75 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"giving up after 4 attempts"* ]]
	[ "$(requests notifications | wc -l)" -eq 4 ]
}

@test "masakari-notify: no retry on 409 (duplicate, host on maintenance)" {
	fake
	run -0 "$HOOK" -c "$T/m.conf"
	run -1 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"(409): Notification received from host pve1 of type VM is duplicate."* ]]
	[ "$(requests notifications | wc -l)" -eq 2 ]
}

@test "masakari-notify: a 409 duplicate after a lost answer (504) means it was stored: exit 0" {
	# the API stored the first attempt, a proxy answered 504: the retry
	# finds it there
	fake --lose-reply 1:504
	run -0 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"masakari already has the notification"* ]]
	[ "$(requests notifications | jq -r .status | tr '\n' ' ')" = "504 409 " ]
}

@test "masakari-notify: a 409 duplicate after a timed-out attempt means it was stored: exit 0" {
	fake --lose-reply 1:hang --hang 4
	sed -i 's/^timeout=.*/timeout=1/' "$T/m.conf"
	run -0 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"masakari already has the notification"* ]]
	# the hung request is logged without a status
	[ "$(requests notifications | jq -r .status | tr '\n' ' ')" = "null 409 " ]
}

@test "masakari-notify: after a lost answer, a 409 for a host on maintenance is still a refusal" {
	fake --fail 1:503 --maintenance pve1
	run -1 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"(409): Notification received from host pve1 of type 'VM' is ignored as the host is already under maintenance."* ]]
	[ "$(requests notifications | jq -r .status | tr '\n' ' ')" = "503 409 " ]
}

@test "masakari-notify: no retry on 400 (a body masakari rejects)" {
	fake
	export PVEKIT_TIME=yesterday
	run -1 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"(400): Invalid input for field/attribute generated_time."* ]]
	[ "$(requests notifications | wc -l)" -eq 1 ]
}

@test "masakari-notify: a wrong password is refused by keystone, nothing posted" {
	fake
	sed -i 's/^password=.*/password=wrong/' "$T/m.conf"
	run -1 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"refused the credentials (401)"* ]]
	[ "$(requests notifications | wc -l)" -eq 0 ]
}

@test "masakari-notify: refuses a config readable by group or others, or broken" {
	fake
	chmod 644 "$T/m.conf"
	run -78 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"mode 644 is readable by group or others, want 600"* ]]
	chmod 640 "$T/m.conf"
	run -78 "$HOOK" -c "$T/m.conf"
	[ ! -s "$T/req.log" ]
	chmod 600 "$T/m.conf"
	echo 'nonsense line' >>"$T/m.conf"
	run -78 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"line 9: not key=value"* ]]
	sed -i '/nonsense/d; /^username=/d' "$T/m.conf"
	run -78 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"username is missing"* ]]
	[ ! -s "$T/req.log" ]
}

@test "masakari-notify: the password is never on a command line nor in a message" {
	# a slow API, so every curl lives long enough to be seen by ps
	fake --fail 2:503 --delay 0.4
	"$HOOK" -c "$T/m.conf" 2>"$T/err" &
	hook=$!
	: >"$T/ps"
	while kill -0 "$hook" 2>/dev/null; do ps -eo args >>"$T/ps"; sleep 0.02; done
	wait "$hook"
	# the sampling did see the requests go out
	grep -q "curl .*127.0.0.1:$PORT" "$T/ps"
	refute grep -qF "$PASS" "$T/ps"
	refute grep -qF "$PASS" "$T/err"
	refute grep -qiF "gAAAA" "$T/ps"
	grep -q 'masakari notified' "$T/err"
}

@test "masakari-notify: a recovery sends nothing, unless notify_recovery=yes" {
	fake
	PVEKIT_EVENT=qga-recovered run -0 --separate-stderr "$HOOK" -c "$T/m.conf"
	[[ $stderr == *"nothing sent"* ]]
	[ ! -s "$T/req.log" ]
	echo notify_recovery=yes >>"$T/m.conf"
	PVEKIT_EVENT=qga-recovered run -0 "$HOOK" -c "$T/m.conf"
	requests notifications | jq -e '.body | fromjson | .notification.payload
		| .event == "LIFECYCLE" and .vir_domain_event == "STARTED_BOOTED"'
}

@test "masakari-notify: -n prints the notification; missing event data is exit 65" {
	# -n still reads (and checks) the config
	run -78 "$HOOK" -n -c "$T/nonexistent"
	fake
	run -0 "$HOOK" -n -c "$T/m.conf"
	jq -e --arg u "$UUID" '.notification.payload.instance_uuid == $u' <<<"$output"
	[ ! -s "$T/req.log" ]
	PVEKIT_UUID= run -65 "$HOOK" -c "$T/m.conf"
	PVEKIT_EVENT= run -65 "$HOOK" -c "$T/m.conf"
	run -64 "$HOOK" -x
}
