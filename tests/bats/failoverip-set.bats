#!/usr/bin/env bats
# failoverip-set against tests/fakes/provider-api (Online, Hetzner, OVH fakes
# that follow research/apis.md and record every request).
bats_require_minimum_version 1.5.0

setup() {
	load common
	pvekit_setup
	TOKEN="tok3n-s3cr3t-$$-$RANDOM"
	HUSER="#ws+pk$RANDOM"
	PASSWORD="pa55-s3cr3t-$$-$RANDOM"
	AK="ak-$$-$RANDOM"
	AS="as-s3cr3t-$$-$RANDOM"
	CK="ck-s3cr3t-$$-$RANDOM"
	LOG=$T/requests.jsonl
	STATE=$T/state.json
	CONF=$T/failoverip.conf
}

teardown() { pvekit_teardown; }

# fake PROVIDER [provider-api options]: starts the fake with this test's
# credentials; sets PORT and URL (the api_url for it).
fake() {
	local provider=$1
	shift
	# credentials through the environment: never on a command line
	start_bg env PROVIDER_API_TOKEN="$TOKEN" PROVIDER_API_USER="$HUSER" \
		PROVIDER_API_PASSWORD="$PASSWORD" PROVIDER_API_APP_KEY="$AK" \
		PROVIDER_API_APP_SECRET="$AS" PROVIDER_API_CONSUMER_KEY="$CK" \
		provider-api --provider "$provider" --port-file "$T/port" --log "$LOG" \
		--state "$STATE" "$@"
	wait_until 10 test -s "$T/port"
	PORT=$(cat "$T/port")
	case $provider in
	online) URL=http://127.0.0.1:$PORT/api/v1 ;;
	hetzner) URL=http://127.0.0.1:$PORT ;;
	ovh) URL=http://127.0.0.1:$PORT/1.0 ;;
	esac
}

# conf PROVIDER [key=value...]: a 0600 config for the fake, quick retries.
conf() {
	local provider=$1
	shift
	(
		umask 077
		{
			echo "provider=$provider"
			echo "api_url=$URL"
			case $provider in
			online) echo "token=$TOKEN" ;;
			hetzner) printf 'user=%s\npassword=%s\n' "$HUSER" "$PASSWORD" ;;
			ovh) printf 'application_key=%s\napplication_secret=%s\nconsumer_key=%s\n' \
				"$AK" "$AS" "$CK" ;;
			esac
			printf '%s\n' "$@"
		} >"$CONF"
	)
}

# Requests as "METHOD PATH STATUS" lines.
requests() { jq -r '"\(.method) \(.path) \(.status)"' "$LOG"; }
nreq() { jq -s length "$LOG"; }
route_of() { jq -r --arg ip "$1" '.routes[$ip] // "-"' "$STATE"; }

refute_secrets() {
	local s
	for s in "$TOKEN" "$PASSWORD" "$AS" "$CK"; do
		if [[ $output == *"$s"* ]]; then
			echo "secret leaked into the output: $output" >&2
			return 1
		fi
	done
}

# ---- usage and configuration ---------------------------------------------

@test "-h prints usage on stdout, -V the version" {
	run -0 failoverip-set -h
	assert_line --partial 'usage: failoverip-set'
	run -0 failoverip-set -V
	assert_output --regexp '^failoverip-set [0-9]'
}

@test "usage errors exit 64" {
	URL=http://127.0.0.1:9/x conf hetzner destination=198.51.100.10
	run -64 failoverip-set -c "$CONF"
	assert_line --partial 'no IP given'
	run -64 failoverip-set -c "$CONF" 203.0.113.300
	assert_line --partial "not an IP address or IP/PREFIX: '203.0.113.300'"
	run -64 failoverip-set -c "$CONF" --bogus 203.0.113.60
	run -64 failoverip-set -c "$CONF" --to not-an-ip 203.0.113.60
	assert_line --partial 'not a valid hetzner destination'
	run -64 failoverip-set -c "$CONF" --list --to 198.51.100.10
}

@test "the operands are checked before the config: a bad IP is 64 even with a broken config" {
	run -64 failoverip-set -c "$T/nope.conf" 203.0.113.300
	assert_line --partial "not an IP address or IP/PREFIX: '203.0.113.300'"
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10
	chmod 0644 "$CONF"
	run -64 failoverip-set -c "$CONF" not-an-ip
	run -64 failoverip-set -c "$CONF"
	assert_line --partial 'no IP given'
}

@test "a config readable by others is refused with 78, before any request" {
	fake hetzner --ip 203.0.113.60=198.51.100.5
	conf hetzner destination=198.51.100.10
	chmod 0644 "$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: mode 0644 is readable by group and others, want 0600"
	[ "$(nreq)" -eq 0 ]
	refute_secrets
}

@test "a config owned by another user is refused with 78" {
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10
	chown nobody "$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "$CONF: owned by uid"
}

@test "a missing config exits 78 naming the file" {
	run -78 failoverip-set -c "$T/nope.conf" 203.0.113.60
	assert_output "failoverip-set: $T/nope.conf: No such file or directory"
}

@test "a config that is a FIFO, too large or with a NUL byte exits 78 at once" {
	mkfifo -m 0600 "$T/fifo.conf"
	run -78 timeout 20 failoverip-set -c "$T/fifo.conf" 203.0.113.60
	assert_output "failoverip-set: $T/fifo.conf: not a regular file"
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10
	head -c 70000 /dev/zero | tr '\0' '#' >>"$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: larger than 65536 bytes"
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10
	printf '#\0\n' >>"$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: contains a NUL byte"
}

@test "an unknown key exits 78 with file:line" {
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 '# comment' '' 'tokn = x'
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:8: unknown key 'tokn'"
}

@test "bad values exit 78 with file:line and never quote a secret" {
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 timeout=soon
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:6: timeout: want seconds from 0.001 to 86400, not 'soon'"

	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 "password=$PASSWORD"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:6: password: set twice"

	URL="http://u:$PASSWORD@127.0.0.1:9" conf hetzner destination=198.51.100.10
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:2: api_url: must not carry credentials: set them with their own keys"
	refute_secrets

	URL=http://127.0.0.1:9 conf hetzner destination=ns1.example
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:5: destination: not a valid hetzner destination: 'ns1.example'"

	URL=http://127.0.0.1:9 conf hetzner 'retries=many'
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "$CONF:5: retries: want a number"

	URL=http://127.0.0.1:9 conf hetzner 'route_dev=no/slash'
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "$CONF:5: route_dev: not an interface name"

	URL=http://127.0.0.1:9 conf hetzner 'this is not a key value line'
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:5: not a key=value line"
}

@test "a config line's error names its line and at most 32 bytes before = or :, never the rest" {
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 "password: s3cr3t=$PASSWORD"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:6: password: want 'password=value', not ':'"
	refute_output --partial s3cr3t

	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 "tokn: $PASSWORD=x"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:6: unknown key 'tokn'"
	refute_secrets

	# a secret pasted without its key: 32 bytes at most, cut at a character
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 \
		"$(printf 'x%.0s' {1..31})é$PASSWORD=x"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:6: unknown key '$(printf 'x%.0s' {1..31})...'"
	refute_secrets
}

@test "a config starting with a UTF-8 byte order mark is read as without it" {
	fake hetzner --ip 203.0.113.60=198.51.100.5
	conf hetzner destination=198.51.100.10
	printf '\xef\xbb\xbf%s' "$(cat "$CONF")" >"$CONF.bom"
	mv "$CONF.bom" "$CONF"
	chmod 0600 "$CONF"
	run -0 failoverip-set -c "$CONF" -n 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 would-route 198.51.100.5'
}

@test "a config writable by group is called so; an api_url with an empty or bad port is refused" {
	URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10
	chmod 0620 "$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: mode 0620 is writable by group, want 0600"
	chmod 0664 "$CONF"
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: mode 0664 is readable and writable by group, readable by others, want 0600"

	local url
	rm "$CONF"
	for url in http://127.0.0.1: http://127.0.0.1:/x http://127.0.0.1:0 http://127.0.0.1:65536 \
		http://127.0.0.1:8o http://[::1]: http://[::1]x; do
		URL=$url conf hetzner destination=198.51.100.10
		run -78 failoverip-set -c "$CONF" 203.0.113.60
		assert_output "failoverip-set: $CONF:2: api_url: bad port (want 1-65535 after the host)"
	done
	URL=http://[::1]:9 conf hetzner destination=198.51.100.10 retries=0
	run -75 failoverip-set -c "$CONF" 203.0.113.60
}

@test "decimal seconds only: 0x10 and 1e3 are refused, with the range" {
	local v
	for v in 0x10 1e3 inf nan 1.5e1 +5 5.; do
		URL=http://127.0.0.1:9 conf hetzner destination=198.51.100.10 "timeout=$v"
		run -78 failoverip-set -c "$CONF" 203.0.113.60
		assert_output "failoverip-set: $CONF:6: timeout: want seconds from 0.001 to 86400, not '$v'"
	done
}

@test "missing provider, credentials or destination exit 78" {
	(umask 077; echo 'destination=198.51.100.10' >"$CONF")
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "provider is not set"

	(umask 077; printf 'provider=gandi\n' >"$CONF")
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF:1: provider: unknown provider 'gandi' (online, hetzner, ovh)"

	(umask 077; printf 'provider=hetzner\nuser=x\n' >"$CONF")
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: provider hetzner needs user and password"

	(umask 077; printf 'provider=online\ntoken=%s\n' "$TOKEN" >"$CONF")
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: $CONF: no destination: set destination= or give --to"
}

@test "the shipped example config works once a provider block is uncommented" {
	fake hetzner --ip 203.0.113.60=198.51.100.5
	(
		umask 077
		{
			sed -n '/^## Hetzner/,/^$/p' "$TOP/share/examples/failoverip.conf" |
				sed 's/^# \([a-z_]* = \)/\1/'
			echo "api_url = $URL"
		} >"$CONF"
	)
	grep -q '^provider = hetzner$' "$CONF"
	grep -q '^password = change-me$' "$CONF"
	run -1 failoverip-set -c "$CONF" 203.0.113.60
	# the example's credentials are not the fake's: refused, exactly once
	assert_output --partial '401'
	[ "$(nreq)" -eq 1 ]
}

# ---- Hetzner Robot -------------------------------------------------------

@test "hetzner: GET then POST with Basic auth and the form body when routed elsewhere" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --server 198.51.100.5 --server 198.51.100.10
	conf hetzner destination=198.51.100.10
	run -0 --separate-stderr failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	run -0 requests
	assert_output "GET /failover 200
POST /failover/203.0.113.60 200"
	basic="Basic $(printf '%s:%s' "$HUSER" "$PASSWORD" | base64 -w0)"
	[ "$(jq -s -r '[.[].headers.authorization] | unique | .[]' "$LOG")" = "$basic" ]
	[ "$(jq -s -r '.[1].body' "$LOG")" = 'active_server_ip=198.51.100.10' ]
	[ "$(jq -s -r '.[1].headers["content-type"]' "$LOG")" = 'application/x-www-form-urlencoded' ]
	[[ "$(jq -s -r '.[0].headers["user-agent"]' "$LOG")" == pvekit/* ]]
	[ "$(route_of 203.0.113.60)" = 198.51.100.10 ]
}

@test "hetzner: no POST when the IP is already routed here" {
	fake hetzner --ip 203.0.113.60=198.51.100.10
	conf hetzner destination=198.51.100.10
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 unchanged 198.51.100.10'
	run -0 requests
	assert_output 'GET /failover 200'
}

@test "hetzner: 409 FAILOVER_ALREADY_ROUTED counts as success" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault race:1:POST
	conf hetzner destination=198.51.100.10
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 unchanged 198.51.100.10'
	run -0 requests
	assert_output "GET /failover 200
POST /failover/203.0.113.60 409"
}

@test "hetzner: several IPs are switched one after the other, --to overrides destination" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.5 \
		--ip 203.0.113.62=198.51.100.7
	conf hetzner destination=198.51.100.5
	run -0 failoverip-set -c "$CONF" --to 198.51.100.7 203.0.113.60 203.0.113.61 203.0.113.62
	assert_output '203.0.113.60 198.51.100.7 routed 198.51.100.5
203.0.113.61 198.51.100.7 routed 198.51.100.5
203.0.113.62 198.51.100.7 unchanged 198.51.100.7'
	run -0 requests
	# one GET /failover serves the run
	assert_output "GET /failover 200
POST /failover/203.0.113.60 200
POST /failover/203.0.113.61 200"
}

@test "hetzner: a slow switch within the timeout succeeds" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --switch-delay 1.5
	conf hetzner destination=198.51.100.10 timeout=30
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	[ "$(nreq)" -eq 2 ]
}

@test "hetzner: a switch slower than the timeout exits 2" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --switch-delay 4
	conf hetzner destination=198.51.100.10 timeout=1.5
	run -2 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: POST /failover/203.0.113.60: no answer within the timeout (1.5 s)"
	# the fake logs a request when it answers: after the switch delay
	wait_until 15 grep -q '"POST"' "$LOG"
	run -0 jq -s -r '[.[].method] | join(" ")' "$LOG"
	assert_output 'GET POST'
}

@test "hetzner: 503 is retried with backoff, then the switch goes through" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault 503:2:GET
	conf hetzner destination=198.51.100.10 retry_delay=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	[ "${#stderr_lines[@]}" -eq 2 ]
	[[ ${stderr_lines[0]} == *"GET /failover: 503 Service Unavailable; retry 1 in"* ]]
	run -0 requests
	assert_output "GET /failover 503
GET /failover 503
GET /failover 200
POST /failover/203.0.113.60 200"
}

@test "hetzner: 500 FAILOVER_FAILED on the POST is retried from the GET" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault 500:1:POST
	conf hetzner destination=198.51.100.10 retry_delay=0.05
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_line '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	run -0 requests
	assert_output "GET /failover 200
POST /failover/203.0.113.60 500
GET /failover 200
POST /failover/203.0.113.60 200"
}

@test "hetzner: 429 waits for Retry-After before the next request" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault 429:1:GET --retry-after 1
	conf hetzner destination=198.51.100.10 retry_delay=0.01
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_line '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	[ "$(nreq)" -eq 3 ]
	# the second request came no sooner than Retry-After said
	run -0 jq -s '.[1].time - .[0].time >= 0.95' "$LOG"
	assert_output true
}

@test "hetzner: a Retry-After beyond the timeout gives up at once with 75" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault 429:1:GET --retry-after 3600
	conf hetzner destination=198.51.100.10 timeout=5
	run -75 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial 'giving up: the next try would end after the timeout (5 s)'
	[ "$(nreq)" -eq 1 ]
}

@test "hetzner: 401 is never retried, and one run never adds up to a lockout" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.5 \
		--ip 203.0.113.62=198.51.100.5
	conf hetzner destination=198.51.100.10
	sed -i "s/^password=.*/password=wrong-$PASSWORD/" "$CONF"
	run -1 failoverip-set -c "$CONF" 203.0.113.60 203.0.113.61 203.0.113.62
	assert_line "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: GET /failover: 401 UNAUTHORIZED: Unauthorized"
	assert_line 'failoverip-set: credentials refused: not trying the other 2 IPs'
	refute_secrets
	[ "$(nreq)" -eq 1 ]
	[ "$(jq .failed_logins "$STATE")" -eq 1 ]
	[ "$(jq .locked_out "$STATE")" = false ]
	# the good credentials still work
	conf hetzner destination=198.51.100.10
	run -0 failoverip-set -c "$CONF" 203.0.113.60
}

@test "hetzner: 403 RATE_LIMIT_EXCEEDED names Robot's limit and window, and is retried" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.5 \
		--rate-limit 1 --rate-interval 1
	conf hetzner destination=198.51.100.10 retry_delay=0.01
	run -0 --separate-stderr failoverip-set -c "$CONF" 203.0.113.60 203.0.113.61
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5
203.0.113.61 198.51.100.10 routed 198.51.100.5'
	[ "${stderr_lines[0]}" = "failoverip-set: 203.0.113.61: 127.0.0.1:$PORT: POST /failover/203.0.113.61: 403 RATE_LIMIT_EXCEEDED: over Robot's limit of 1 request in 1 s; retry 1 in 1.0 s" ]
	run -0 requests
	assert_output "GET /failover 200
POST /failover/203.0.113.60 200
POST /failover/203.0.113.61 403
GET /failover 200
POST /failover/203.0.113.61 200"
}

@test "hetzner: a rate-limit window longer than the timeout is no wait: retried every 5 s, then 75" {
	# interval is the length of Robot's window, which may free up at any
	# moment: not a time to wait before the next try
	fake hetzner --ip 203.0.113.60=198.51.100.5 --rate-limit 1 --rate-interval 3600 \
		--ip 203.0.113.61=198.51.100.5
	conf hetzner destination=198.51.100.10 timeout=8 retry_delay=0.01
	run -75 --separate-stderr failoverip-set -c "$CONF" 203.0.113.60 203.0.113.61
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	[ "${stderr_lines[0]}" = "failoverip-set: 203.0.113.61: 127.0.0.1:$PORT: POST /failover/203.0.113.61: 403 RATE_LIMIT_EXCEEDED: over Robot's limit of 1 request in 3600 s; retry 1 in 5.0 s" ]
	[ "${stderr_lines[1]}" = "failoverip-set: 203.0.113.61: 127.0.0.1:$PORT: POST /failover/203.0.113.61: 403 RATE_LIMIT_EXCEEDED: over Robot's limit of 1 request in 3600 s; giving up: the next try would end after the timeout (8 s)" ]
	run -0 jq -s -r '[.[] | select(.method == "POST" and .status == 403)] | length' "$LOG"
	assert_output 2
}

@test "hetzner: one GET /failover serves every IP of a run, within Robot's 100 GETs an hour" {
	# the fake allows 2 GETs here: one a run is all it takes
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.5 \
		--ip 203.0.113.62=198.51.100.10 --get-limit 2
	conf hetzner destination=198.51.100.10 retries=0
	run -0 failoverip-set -c "$CONF" 203.0.113.60 203.0.113.61 203.0.113.62
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5
203.0.113.61 198.51.100.10 routed 198.51.100.5
203.0.113.62 198.51.100.10 unchanged 198.51.100.10'
	run -0 failoverip-set -c "$CONF" --list
	# the third GET of the hour is refused, as Robot does past its limit
	run -75 failoverip-set -c "$CONF" --list
	assert_output "failoverip-set: hetzner: 127.0.0.1:$PORT: GET /failover: 403 RATE_LIMIT_EXCEEDED: over Robot's limit of 2 requests in 3600 s; giving up after 0 retries"
	run -0 requests
	assert_output "GET /failover 200
POST /failover/203.0.113.60 200
POST /failover/203.0.113.61 200
GET /failover 200
GET /failover 403"
}

@test "hetzner: an address inside a failover net moves the net, and says so" {
	# Robot names a failover net by its net address and switches it whole
	fake hetzner --ip 203.0.113.64/29=198.51.100.5 --ip 203.0.113.60=198.51.100.5
	conf hetzner destination=198.51.100.10
	run -0 --separate-stderr failoverip-set -c "$CONF" 203.0.113.66 203.0.113.69
	assert_output '203.0.113.66 198.51.100.10 routed 198.51.100.5
203.0.113.69 198.51.100.10 unchanged 198.51.100.10'
	[ "${stderr_lines[0]}" = "failoverip-set: 203.0.113.66: part of failover net 203.0.113.64/29: the whole net moves" ]
	[ "${stderr_lines[1]}" = "failoverip-set: 203.0.113.69: part of failover net 203.0.113.64/29: the whole net moves" ]
	run -0 requests
	assert_output 'GET /failover 200
POST /failover/203.0.113.64 200'
	[ "$(jq -s -r '.[1].body' "$LOG")" = 'active_server_ip=198.51.100.10' ]
	[ "$(route_of 203.0.113.64)" = 198.51.100.10 ]
	# the net given as a net, and the list shows nets as nets
	run -0 failoverip-set -c "$CONF" -n --to 198.51.100.5 203.0.113.64/29
	assert_output '203.0.113.64/29 198.51.100.5 would-route 198.51.100.10'
	run -0 failoverip-set -c "$CONF" --list
	assert_output '203.0.113.64/29 198.51.100.10
203.0.113.60 198.51.100.5'
	# an address outside every failover IP and net is not one
	run -1 failoverip-set -c "$CONF" 203.0.113.72
	assert_output "failoverip-set: 203.0.113.72: 127.0.0.1:$PORT: not a failover IP of this hetzner account"
}

@test "hetzner: an IPv6 address moves its failover /64 to destination6, IPv4 to destination" {
	# Robot routes an IPv6 net to the destination server's IPv6 subnet
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 2a01:4f8:fff1::/64=2a01:4f8:111:4221:: \
		--server 198.51.100.5 --server 198.51.100.10 \
		--server 2a01:4f8:111:4221:: --server 2a01:4f8:222:5176::
	conf hetzner destination=198.51.100.10 destination6=2a01:4f8:222:5176::
	run -0 --separate-stderr failoverip-set -c "$CONF" 203.0.113.60 2a01:4f8:fff1::10
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5
2a01:4f8:fff1::10 2a01:4f8:222:5176:: routed 2a01:4f8:111:4221::'
	assert_equal "$stderr" "failoverip-set: 2a01:4f8:fff1::10: part of failover net 2a01:4f8:fff1::/64: the whole net moves"
	run -0 requests
	assert_output 'GET /failover 200
POST /failover/203.0.113.60 200
POST /failover/2a01:4f8:fff1:: 200'
	[ "$(jq -s -r '.[2].body' "$LOG")" = 'active_server_ip=2a01%3A4f8%3A222%3A5176%3A%3A' ]
	[ "$(route_of 2a01:4f8:fff1::)" = 2a01:4f8:222:5176:: ]
	# --to with an IPv6 subnet is the IPv6 destination
	run -0 failoverip-set -c "$CONF" --to 2a01:4f8:111:4221:: 2a01:4f8:fff1::/64
	assert_output '2a01:4f8:fff1::/64 2a01:4f8:111:4221:: routed 2a01:4f8:222:5176::'
}

@test "hetzner: an IPv6 move without destination6 is refused (78), the IPv4 ones still move" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 2a01:4f8:fff1::/64=2a01:4f8:111:4221::
	conf hetzner destination=198.51.100.10
	run -78 --separate-stderr failoverip-set -c "$CONF" 2a01:4f8:fff1::10 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	[ "${stderr_lines[1]}" = "failoverip-set: 2a01:4f8:fff1::10: hetzner routes an IPv6 net to the destination server's IPv6 subnet, not to its main IPv4 address: set destination6 in $CONF (or give the subnet with --to)" ]
	run -0 jq -s -r '[.[] | select(.method == "POST") | .path] | join(" ")' "$LOG"
	assert_output '/failover/203.0.113.60'
	[ "$(route_of 2a01:4f8:fff1::)" = 2a01:4f8:111:4221:: ]
	# destination takes IPv4 only, destination6 IPv6 only
	conf hetzner destination=2a01:4f8:222:5176::
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "$CONF: destination: want this server's main IPv4 address, not '2a01:4f8:222:5176::'"
	conf hetzner destination=198.51.100.10 destination6=198.51.100.11
	run -78 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial "$CONF: destination6: want this server's IPv6 subnet"
	URL=http://127.0.0.1:9/api/v1 conf online destination=62.210.16.10 destination6=2a01:4f8::
	run -78 failoverip-set -c "$CONF" 212.129.0.170
	assert_output "failoverip-set: $CONF:5: destination6: provider online routes IPv6 to destination (only hetzner has a destination6)"
}

@test "hetzner: --list of an account without failover IPs (404 NOT_FOUND) prints nothing, exit 0" {
	fake hetzner
	conf hetzner
	run -0 --separate-stderr failoverip-set -c "$CONF" --list
	assert_output ''
	assert_equal "$stderr" ''
	run -0 requests
	assert_output 'GET /failover 404'
	conf hetzner destination=198.51.100.10
	run -1 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: not a failover IP of this hetzner account"
}

@test "hetzner: FAILOVER_LOCKED is retried until the running switch is over" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --lock 203.0.113.60:2
	conf hetzner destination=198.51.100.10 retry_delay=0.1 retries=20
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_line '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	assert_line --partial 'POST /failover/203.0.113.60: 409 FAILOVER_LOCKED (a switch is running); retry 1 in'
	run -0 jq -s -r '[.[] | select(.status == 409)] | length' "$LOG"
	[ "$output" -ge 1 ]
	run -0 jq -s -r '.[-1] | "\(.method) \(.status)"' "$LOG"
	assert_output 'POST 200'
}

@test "hetzner: still failing after the retries exits 75" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault 503:99
	conf hetzner destination=198.51.100.10 retries=2 retry_delay=0.05
	run -75 failoverip-set -c "$CONF" 203.0.113.60
	assert_line "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: GET /failover: 503 Service Unavailable; giving up after 2 retries"
	refute_secrets
	[ "$(nreq)" -eq 3 ]
}

@test "hetzner: a dropped connection is retried" {
	# on the first request of the run: a fresh connection, which libcurl
	# itself never re-sends
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault reset:1:GET
	conf hetzner destination=198.51.100.10 retry_delay=0.05
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_line '203.0.113.60 198.51.100.10 routed 198.51.100.5'
	assert_line --regexp '^failoverip-set: 203.0.113.60: 127.0.0.1:[0-9]+: GET /failover: .*; retry 1 in [0-9.]+ s$'
	run -0 jq -s -r '[.[].method] | join(" ")' "$LOG"
	assert_output 'GET GET POST'
}

@test "hetzner: nobody listening is a network error, 75 after the retries" {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	URL=http://127.0.0.1:$port conf hetzner destination=198.51.100.10 retries=1 retry_delay=0.05
	run -75 failoverip-set -c "$CONF" 203.0.113.60
	assert_line --regexp "^failoverip-set: 203.0.113.60: 127.0.0.1:$port: GET /failover: .*; giving up after 1 retries$"
	refute_secrets
}

@test "hetzner: broken JSON is one error line naming the peer, exit 65" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault badjson:1:GET
	conf hetzner destination=198.51.100.10
	run -65 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --regexp "^failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: GET /failover: invalid JSON reply \(200, [0-9]+ bytes\): .*$"
	[ "${#lines[@]}" -eq 1 ]
	[ "$(nreq)" -eq 1 ]
}

@test "hetzner: an API that hangs past the timeout exits 2" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault hang:1:GET --hang 30
	conf hetzner destination=198.51.100.10 timeout=1
	run -2 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial 'GET /failover: no answer within the timeout (1 s)'
	[ "$(route_of 203.0.113.60)" = 198.51.100.5 ]
}

@test "hetzner: -n reads the route and changes nothing" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=198.51.100.10
	conf hetzner destination=198.51.100.10
	run -0 failoverip-set -n -c "$CONF" 203.0.113.60 203.0.113.61
	assert_output '203.0.113.60 198.51.100.10 would-route 198.51.100.5
203.0.113.61 198.51.100.10 unchanged 198.51.100.10'
	run -0 jq -s -r '[.[].method] | unique | join(" ")' "$LOG"
	assert_output 'GET'
	[ "$(route_of 203.0.113.60)" = 198.51.100.5 ]
	[ "$(jq .switches "$STATE")" -eq 0 ]
}

@test "hetzner: --list prints IP CURRENT_DEST, - when unrouted" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --ip 203.0.113.61=-
	conf hetzner
	run -0 failoverip-set -c "$CONF" --list
	assert_output '203.0.113.60 198.51.100.5
203.0.113.61 -'
	run -0 requests
	assert_output 'GET /failover 200'
	run -0 failoverip-set -c "$CONF" --list 203.0.113.61
	assert_output '203.0.113.61 -'
}

@test "hetzner: an IP not in the account exits 1, or is skipped with --skip-unknown" {
	fake hetzner --ip 203.0.113.60=198.51.100.5
	conf hetzner destination=198.51.100.10
	run -1 failoverip-set -c "$CONF" 192.0.2.99
	assert_output "failoverip-set: 192.0.2.99: 127.0.0.1:$PORT: not a failover IP of this hetzner account"
	run -0 failoverip-set -c "$CONF" --skip-unknown 192.0.2.99 203.0.113.60
	assert_line "failoverip-set: 192.0.2.99: 127.0.0.1:$PORT: not a failover IP of this hetzner account, skipped"
	assert_line '203.0.113.60 198.51.100.10 routed 198.51.100.5'
}

@test "hetzner: a destination that is not our server is refused once, exit 1" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --server 198.51.100.5
	conf hetzner destination=198.51.100.10
	run -1 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: POST /failover/203.0.113.60: 404 FAILOVER_NEW_SERVER_NOT_FOUND: The destination server was not found"
	[ "$(nreq)" -eq 2 ]
}

@test "hetzner: the password is never on the command line while it runs" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --switch-delay 3
	conf hetzner destination=198.51.100.10
	start_bg failoverip-set -c "$CONF" 203.0.113.60
	pid=$BG_PID
	wait_until 10 jq -e '.switching | length == 1' "$STATE"
	kill -0 "$pid"
	run -0 ps -eww -o args
	refute_secrets
	run -0 cat "/proc/$pid/cmdline" "/proc/$pid/environ"
	refute_secrets
}

# ---- TLS and transport ------------------------------------------------

# cert NAME SAN: a self-signed certificate $T/NAME.pem with key $T/NAME.key
cert() {
	command -v openssl >/dev/null || skip "openssl(1) is not installed"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=$2" -addext "subjectAltName=$3" \
		-keyout "$T/$1.key" -out "$T/$1.pem" 2>/dev/null
}

@test "https: the certificate is verified; ca_file makes a private CA work" {
	cert api 127.0.0.1 IP:127.0.0.1
	fake hetzner --ip 203.0.113.60=198.51.100.5 --tls-cert "$T/api.pem" --tls-key "$T/api.key"
	URL=https://127.0.0.1:$PORT
	conf hetzner destination=198.51.100.10
	run -69 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --regexp "^failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: GET /failover: TLS: .*certificate"
	[ "$(nreq)" -eq 0 ]
	refute_secrets

	conf hetzner destination=198.51.100.10 "ca_file=$T/api.pem"
	run -0 failoverip-set -c "$CONF" 203.0.113.60
	assert_output '203.0.113.60 198.51.100.10 routed 198.51.100.5'
}

@test "https: a certificate for another name is refused even from a trusted CA" {
	cert other api.example DNS:api.example
	fake hetzner --ip 203.0.113.60=198.51.100.5 --tls-cert "$T/other.pem" \
		--tls-key "$T/other.key"
	URL=https://127.0.0.1:$PORT
	conf hetzner destination=198.51.100.10 "ca_file=$T/other.pem"
	run -69 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial ': TLS: '
	[ "$(nreq)" -eq 0 ]
}

@test "https: ovh signs the https URL" {
	cert api 127.0.0.1 IP:127.0.0.1
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --tls-cert "$T/api.pem" \
		--tls-key "$T/api.key"
	URL=https://127.0.0.1:$PORT/1.0
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 "ca_file=$T/api.pem"
	run -0 failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu'
}

@test "plain http to anything but loopback draws a warning" {
	ns=$(netns_add http)
	URL=http://192.0.2.1:9 conf hetzner destination=198.51.100.10 retries=0
	# a namespace without routes: nothing leaves this machine
	run -75 ip netns exec "$ns" failoverip-set -c "$CONF" 203.0.113.60
	assert_line "failoverip-set: $CONF: api_url is plain http: credentials would cross the network unencrypted"
	refute_secrets
}

@test "redirects are not followed" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault redirect:1:GET
	conf hetzner destination=198.51.100.10
	run -1 failoverip-set -c "$CONF" 203.0.113.60
	assert_output "failoverip-set: 203.0.113.60: 127.0.0.1:$PORT: GET /failover: 302 redirect (not followed)"
	[ "$(nreq)" -eq 1 ]
}

@test "an https api_url never falls back to plain http" {
	fake hetzner --ip 203.0.113.60=198.51.100.5
	URL=https://127.0.0.1:$PORT
	conf hetzner destination=198.51.100.10 retries=0
	# a failed handshake may be a passing network problem: retried, here not
	run -75 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --regexp 'GET /failover: .*SSL.*; giving up after 0 retries$'
	[ "$(jq -s '[.[] | select(.method == "GET")] | length' "$LOG")" -eq 0 ]
	[ "$(route_of 203.0.113.60)" = 198.51.100.5 ]
}

# ---- Online.net ----------------------------------------------------------

@test "online: GET the list, then POST source/destination with the Bearer token" {
	fake online --ip 212.129.0.170=62.210.16.9 --server 62.210.16.9 --server 62.210.16.10
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" 212.129.0.170
	assert_output '212.129.0.170 62.210.16.10 routed 62.210.16.9'
	run -0 requests
	assert_output 'GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 200'
	[ "$(jq -s -r '[.[].headers.authorization] | unique | .[]' "$LOG")" = "Bearer $TOKEN" ]
	[ "$(jq -s -r '.[1].body' "$LOG")" = 'source=212.129.0.170&destination=62.210.16.10' ]
	[ "$(jq -s -r '.[1].headers["content-type"]' "$LOG")" = 'application/x-www-form-urlencoded' ]
	[ "$(route_of 212.129.0.170)" = 62.210.16.10 ]
}

@test "online: the IPs that need it move in one POST" {
	fake online --ip 212.129.0.170=62.210.16.9 --ip 212.129.0.171=- \
		--ip 212.129.0.172=62.210.16.10
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" 212.129.0.170 212.129.0.171 212.129.0.172
	assert_output '212.129.0.170 62.210.16.10 routed 62.210.16.9
212.129.0.171 62.210.16.10 routed -
212.129.0.172 62.210.16.10 unchanged 62.210.16.10'
	run -0 requests
	assert_output 'GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 200'
	[ "$(jq -s -r '.[1].body' "$LOG")" = 'source=212.129.0.170,212.129.0.171&destination=62.210.16.10' ]
}

@test "online: no POST when everything is routed here already" {
	fake online --ip 212.129.0.170=62.210.16.10 --ip 212.129.0.171=62.210.16.10
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" 212.129.0.170 212.129.0.171
	assert_output '212.129.0.170 62.210.16.10 unchanged 62.210.16.10
212.129.0.171 62.210.16.10 unchanged 62.210.16.10'
	run -0 requests
	assert_output 'GET /api/v1/server/failover 200'
}

@test "online: 409 Address already provisioned counts as success" {
	fake online --ip 212.129.0.170=62.210.16.9 --fault race:1:POST
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" 212.129.0.170
	assert_output '212.129.0.170 62.210.16.10 unchanged 62.210.16.10'
	run -0 requests
	assert_output 'GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 409'
}

@test "online: a 200 whose body is not true is a bad reply, exit 65, not success" {
	# Online answers a successful edit with the body true; its clients read
	# the body as a boolean, so only true is success
	fake online --ip 212.129.0.170=62.210.16.9 --fault nottrue:1:POST
	conf online destination=62.210.16.10
	run -65 failoverip-set -c "$CONF" 212.129.0.170
	assert_output "failoverip-set: 212.129.0.170: 127.0.0.1:$PORT: POST /server/failover/edit: 200 with the body '{}', not true: whether the IPs moved is unknown (check with --list)"
	run -0 requests
	assert_output 'GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 200'
	[ "$(route_of 212.129.0.170)" = 62.210.16.9 ]
}

@test "online: a 200 false is a refusal, exit 1" {
	fake online --ip 212.129.0.170=62.210.16.9 --fault false:1:POST
	conf online destination=62.210.16.10
	run -1 failoverip-set -c "$CONF" 212.129.0.170
	assert_output "failoverip-set: 212.129.0.170: 127.0.0.1:$PORT: POST /server/failover/edit: 200 false: the edit was refused"
	[ "$(route_of 212.129.0.170)" = 62.210.16.9 ]
}

@test "online: a bad token is refused once, exit 1, and never shown" {
	fake online --ip 212.129.0.170=62.210.16.9 --ip 212.129.0.171=62.210.16.9
	conf online destination=62.210.16.10
	sed -i "s/^token=.*/token=x$TOKEN/" "$CONF"
	run -1 failoverip-set -c "$CONF" 212.129.0.170 212.129.0.171
	assert_output "failoverip-set: 212.129.0.170,212.129.0.171: 127.0.0.1:$PORT: GET /server/failover: 401 invalid_token: The access token provided is invalid."
	refute_secrets
	[ "$(nreq)" -eq 1 ]
}

@test "online: a token the API echoes back is masked, also with -v" {
	fake online --ip 212.129.0.170=62.210.16.9 --fault echoauth:1
	conf online destination=62.210.16.10
	run -1 failoverip-set -v -c "$CONF" 212.129.0.170
	assert_line "failoverip-set: 212.129.0.170: 127.0.0.1:$PORT: GET /server/failover: 400 bad request from Bearer ***"
	refute_secrets
}

@test "hetzner: an echoed Basic authorization is masked" {
	fake hetzner --ip 203.0.113.60=198.51.100.5 --fault echoauth:1
	conf hetzner destination=198.51.100.10
	run -1 failoverip-set -c "$CONF" 203.0.113.60
	assert_output --partial '400 INVALID_INPUT: bad request from Basic ***'
	refute_output --partial "$(printf '%s:%s' "$HUSER" "$PASSWORD" | base64 -w0)"
	refute_secrets
}

@test "ovh: an echoed consumer key is masked" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault echoauth:1:GET:/ip/
	conf ovh destination=ns3000002.ip-198-51-100.eu
	run -1 failoverip-set -c "$CONF" 192.0.2.10
	assert_output --partial '400 INVALID_INPUT: bad request from ***'
	refute_secrets
}

@test "online: 503 and 429 are retried, then the batch moves" {
	fake online --ip 212.129.0.170=62.210.16.9 --fault 503:1:POST --fault 429:1:GET \
		--retry-after 0
	conf online destination=62.210.16.10 retry_delay=0.05
	run -0 failoverip-set -c "$CONF" 212.129.0.170
	assert_line '212.129.0.170 62.210.16.10 routed 62.210.16.9'
	run -0 requests
	assert_output 'GET /api/v1/server/failover 429
GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 503
GET /api/v1/server/failover 200
POST /api/v1/server/failover/edit 200'
}

@test "online: --list and an IP not in the account" {
	fake online --ip 212.129.0.170=62.210.16.9 --ip 212.129.0.171=-
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" --list
	assert_output '212.129.0.170 62.210.16.9
212.129.0.171 -'
	: >"$LOG"
	run -0 failoverip-set -c "$CONF" --list 212.129.0.171 212.129.0.170/32
	assert_output '212.129.0.171 -
212.129.0.170 62.210.16.9'
	[ "$(nreq)" -eq 1 ]
	run -1 failoverip-set -c "$CONF" 192.0.2.1
	assert_output --partial 'not a failover IP of this online account'
	run -64 failoverip-set -c "$CONF" 212.129.0.0/24
}

@test "online: the same IP twice, with and without /32, is sent once" {
	fake online --ip 212.129.0.170=62.210.16.9
	conf online destination=62.210.16.10
	run -0 failoverip-set -c "$CONF" 212.129.0.170 212.129.0.170/32
	assert_output '212.129.0.170 62.210.16.10 routed 62.210.16.9'
	[ "$(jq -s -r '.[1].body' "$LOG")" = 'source=212.129.0.170&destination=62.210.16.10' ]
}

@test "online: broken JSON in the list exits 65" {
	fake online --ip 212.129.0.170=62.210.16.9 --fault badjson:1:GET
	conf online destination=62.210.16.10
	run -65 failoverip-set -c "$CONF" 212.129.0.170
	assert_output --partial "127.0.0.1:$PORT: GET /server/failover: invalid JSON reply"
	[ "${#lines[@]}" -eq 1 ]
}

# ---- OVHcloud ------------------------------------------------------------

@test "ovh: the signature of apis.md's worked example" {
	cat >"$T/sig.c" <<'EOF'
#include <stdio.h>
#include "sign.h"
int main(void)
{
	char s[OVH_SIGNATURE_LEN + 1];
	ovh_signature("EXAMPLE_AS", "EXAMPLE_CK", "POST",
		      "https://eu.api.ovh.com/1.0/ip/192.0.2.10%2F32/move",
		      "{\"to\":\"ns3000002.ip-198-51-100.eu\"}", 1700000000, s);
	puts(s);
	ovh_signature("EXAMPLE_AS", "EXAMPLE_CK", "GET",
		      "https://eu.api.ovh.com/1.0/ip/192.0.2.10%2F32", "", 1700000000, s);
	puts(s);
	return 0;
}
EOF
	cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$TOP/cmd/failoverip-set" \
		-o "$T/sig" "$T/sig.c" "$TOP/cmd/failoverip-set/sign.c"
	run -0 "$T/sig"
	assert_output '$1$ed8c716f2bdd6b018869ca5df4b053c4b4b71d6a
$1$adfd95259037a5d27b59a2d3db2656ba1c27ecbb'
}

@test "ovh: signed move accepted, the task polled until done" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --task-steps 2
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05
	run -0 failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu'
	run -0 requests
	# the block that holds the address, its route, no move under way, the
	# move, its task until done
	assert_output 'GET /1.0/auth/time 200
GET /1.0/ip?ip=192.0.2.10&type=failover 200
GET /1.0/ip/192.0.2.10%2F32 200
GET /1.0/ip/192.0.2.10%2F32/task?function=genericMoveFloatingIp&status=todo 200
GET /1.0/ip/192.0.2.10%2F32/task?function=genericMoveFloatingIp&status=doing 200
GET /1.0/ip/192.0.2.10%2F32/task?function=genericMoveFloatingIp&status=init 200
POST /1.0/ip/192.0.2.10%2F32/move 200
GET /1.0/ip/192.0.2.10%2F32/task/123456 200
GET /1.0/ip/192.0.2.10%2F32/task/123456 200
GET /1.0/ip/192.0.2.10%2F32/task/123456 200
GET /1.0/ip/192.0.2.10%2F32/task/123456 200
GET /1.0/ip/192.0.2.10%2F32/task/123456 200'
	[ "$(route_of 192.0.2.10/32)" = ns3000002.ip-198-51-100.eu ]
	# the POST: exact body, the four headers, a signature over all of it
	post=$(jq -s -c '.[6]' "$LOG")
	[ "$(jq -r .body <<<"$post")" = '{"to":"ns3000002.ip-198-51-100.eu"}' ]
	[ "$(jq -r '.headers["x-ovh-application"]' <<<"$post")" = "$AK" ]
	[ "$(jq -r '.headers["x-ovh-consumer"]' <<<"$post")" = "$CK" ]
	[ "$(jq -r '.headers["content-type"]' <<<"$post")" = application/json ]
	ts=$(jq -r '.headers["x-ovh-timestamp"]' <<<"$post")
	want='$1$'$(printf '%s' "$AS+$CK+POST+$URL/ip/192.0.2.10%2F32/move+{\"to\":\"ns3000002.ip-198-51-100.eu\"}+$ts" | sha1sum | cut -d' ' -f1)
	[ "$(jq -r '.headers["x-ovh-signature"]' <<<"$post")" = "$want" ]
	# /auth/time is not signed
	[ "$(jq -s -r '.[0].headers["x-ovh-signature"] // "none"' "$LOG")" = none ]
}

@test "ovh: timestamps follow the server clock from /auth/time" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --clock-offset 7200
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05
	run -0 failoverip-set -c "$CONF" 192.0.2.10
	assert_line --partial 'routed'
	ts=$(jq -s -r '.[1].headers["x-ovh-timestamp"]' "$LOG")
	[ $((ts - $(date +%s))) -gt 7000 ]
}

@test "ovh: no move when routedTo is this service already" {
	fake ovh --ip 192.0.2.10=ns3000002.ip-198-51-100.eu
	conf ovh destination=NS3000002.ip-198-51-100.eu
	run -0 failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 NS3000002.ip-198-51-100.eu unchanged NS3000002.ip-198-51-100.eu'
	run -0 requests
	assert_output 'GET /1.0/auth/time 200
GET /1.0/ip?ip=192.0.2.10&type=failover 200
GET /1.0/ip/192.0.2.10%2F32 200'
}

@test "ovh: a wrong application secret is INVALID_SIGNATURE, not retried, never shown" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu
	conf ovh destination=ns3000002.ip-198-51-100.eu
	sed -i "s/^application_secret=.*/application_secret=x$AS/" "$CONF"
	run -1 failoverip-set -c "$CONF" 192.0.2.10 192.0.2.11
	assert_line "failoverip-set: 192.0.2.10: 127.0.0.1:$PORT: GET /ip?ip=192.0.2.10&type=failover: 400 INVALID_SIGNATURE: Invalid signature"
	assert_line 'failoverip-set: credentials refused: not trying the other 1 IP'
	refute_secrets
	run -0 requests
	assert_output 'GET /1.0/auth/time 200
GET /1.0/ip?ip=192.0.2.10&type=failover 400'
}

@test "ovh: a wrong consumer key is 403, exit 1, one request after the time" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu
	conf ovh destination=ns3000002.ip-198-51-100.eu
	sed -i "s/^consumer_key=.*/consumer_key=x$CK/" "$CONF"
	run -1 failoverip-set -c "$CONF" 192.0.2.10
	assert_output --partial '403 INVALID_CREDENTIAL: This credential is not valid'
	refute_secrets
	[ "$(nreq)" -eq 2 ]
}

@test "ovh: a task that ends in customerError exits 1" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault taskerror:1:POST
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05
	run -1 failoverip-set -c "$CONF" 192.0.2.10
	assert_output --partial 'task 123456 ended customerError: The destination cannot receive this block'
	[ "$(route_of 192.0.2.10/32)" = ns3000001.ip-198-51-100.eu ]
}

@test "ovh: a task still running at the timeout exits 2" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --task-steps 100000
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.1 timeout=1
	run -2 failoverip-set -c "$CONF" 192.0.2.10
	assert_output --regexp 'task 123456 still (todo|doing) after 1 s$'
}

@test "ovh: a failed poll resumes the same task, no second move" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault 503:1:GET:/task/
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 retry_delay=0.05
	run -0 failoverip-set -c "$CONF" 192.0.2.10
	assert_line --partial 'routed'
	run -0 jq -s '[.[] | select(.method == "POST")] | length' "$LOG"
	assert_output 1
}

@test "ovh: an unknown block is Client::NotFound, exit 1; --list shows blocks" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --ip 198.51.100.16/28=-
	conf ovh destination=ns3000002.ip-198-51-100.eu
	run -1 failoverip-set -c "$CONF" 192.0.2.99
	assert_output "failoverip-set: 192.0.2.99: 127.0.0.1:$PORT: not a failover IP of this ovh account"
	run -0 failoverip-set -c "$CONF" --list
	assert_output '192.0.2.10 ns3000001.ip-198-51-100.eu
198.51.100.16/28 -'
	run -0 failoverip-set -c "$CONF" --list 198.51.100.16/28
	assert_output '198.51.100.16/28 -'
}

@test "ovh: an address inside a /29 moves its block, and says so" {
	# OVH knows only the exact block: /ip/192.0.2.10%2F32 is 404 here
	fake ovh --ip 192.0.2.8/29=ns3000001.ip-198-51-100.eu --ip 192.0.2.16/32=-
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 192.0.2.10 192.0.2.13
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu
192.0.2.13 ns3000002.ip-198-51-100.eu unchanged ns3000002.ip-198-51-100.eu'
	[ "${stderr_lines[0]}" = "failoverip-set: 192.0.2.10: part of failover block 192.0.2.8/29: the whole block moves" ]
	[ "${stderr_lines[1]}" = "failoverip-set: 192.0.2.13: part of failover block 192.0.2.8/29: the whole block moves" ]
	run -0 jq -s -r '[.[] | select(.method == "POST") | .path] | join(" ")' "$LOG"
	assert_output '/1.0/ip/192.0.2.8%2F29/move'
	run -0 jq -s -r '[.[] | select(.status == 404)] | length' "$LOG"
	assert_output 0
	[ "$(route_of 192.0.2.8/29)" = ns3000002.ip-198-51-100.eu ]
	# the block itself, and an address outside every block
	run -0 failoverip-set -c "$CONF" -n --to ns3000001.ip-198-51-100.eu 192.0.2.8/29
	assert_output '192.0.2.8/29 ns3000001.ip-198-51-100.eu would-route ns3000002.ip-198-51-100.eu'
	run -1 failoverip-set -c "$CONF" 192.0.2.17
	assert_output "failoverip-set: 192.0.2.17: 127.0.0.1:$PORT: not a failover IP of this ovh account"
}

@test "ovh: a pending move to this service is followed, not posted again" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu \
		--pending 192.0.2.10/32=ns3000002.ip-198-51-100.eu:init
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 retries=1 \
		retry_delay=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu'
	assert_equal "$stderr" "failoverip-set: 192.0.2.10: a move of 192.0.2.10/32 to ns3000002.ip-198-51-100.eu is under way (task 123456): following it, not moving it again"
	run -0 jq -s -r '[.[] | select(.method == "POST")] | length' "$LOG"
	assert_output 0
	run -0 jq -r '.tasks["123456"].status' "$STATE"
	assert_output done
}

@test "ovh: a pending move elsewhere is waited for, then the block is moved here" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu \
		--pending 192.0.2.10/32=ns3000003.ip-198-51-100.eu:doing
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 retry_delay=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000003.ip-198-51-100.eu'
	[ "${stderr_lines[0]}" = "failoverip-set: 192.0.2.10: a move of 192.0.2.10/32 to ns3000003.ip-198-51-100.eu is under way (task 123456): waiting for it" ]
	[[ ${stderr_lines[1]} == *"GET /ip/192.0.2.10%2F32/task/123456: task 123456 (a move of 192.0.2.10/32 to ns3000003.ip-198-51-100.eu) ended done: moving it here; retry 1 in"* ]]
	run -0 jq -s -r '[.[] | select(.method == "POST") | .status] | join(" ")' "$LOG"
	assert_output 200
	[ "$(route_of 192.0.2.10/32)" = ns3000002.ip-198-51-100.eu ]
}

@test "ovh: a 409 on the move (a move started meanwhile) follows that move" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault pendrace:1:POST
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 retries=1 \
		retry_delay=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu'
	assert_equal "$stderr" "failoverip-set: 192.0.2.10: a move of 192.0.2.10/32 to ns3000002.ip-198-51-100.eu is under way (task 123456): following it, not moving it again"
	run -0 jq -s -r '[.[] | select(.method == "POST") | .status] | join(" ")' "$LOG"
	assert_output 409
	[ "$(route_of 192.0.2.10/32)" = ns3000002.ip-198-51-100.eu ]
}

@test "ovh: a task that ends ovhError (OVH's own failure) is moved again" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault taskovherror:1:POST
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05 retry_delay=0.05
	run -0 --separate-stderr failoverip-set -c "$CONF" 192.0.2.10
	assert_output '192.0.2.10 ns3000002.ip-198-51-100.eu routed ns3000001.ip-198-51-100.eu'
	[[ ${stderr_lines[0]} == *'task 123456 ended ovhError; retry 1 in'* ]]
	run -0 jq -s -r '[.[] | select(.method == "POST") | .status] | join(" ")' "$LOG"
	assert_output '200 200'
}

@test "ovh: a task that ends cancelled exits 1" {
	fake ovh --ip 192.0.2.10=ns3000001.ip-198-51-100.eu --fault taskcancelled:1:POST
	conf ovh destination=ns3000002.ip-198-51-100.eu poll_interval=0.05
	run -1 failoverip-set -c "$CONF" 192.0.2.10
	assert_output --partial 'task 123456 ended cancelled'
	[ "$(route_of 192.0.2.10/32)" = ns3000001.ip-198-51-100.eu ]
}
