#!/usr/bin/env bash
# Self-test of tests/oidc/server.mjs: drives the real provider with curl and a cookie jar, the way the
# Rust end-to-end tests do (no browser). Prints PASS/FAIL lines and "N passed, N failed"; exits non-zero
# on any failure. Needs node, curl and `npm ci --prefix tests/oidc` done first.
#   bash tests/oidc/selftest.sh
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
PASSED=0
FAILED=0
SERVER_PIDS=()

cleanup() {
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -d "$HERE/node_modules/oidc-provider" ]; then
  echo "selftest: run 'npm ci --prefix tests/oidc' first" >&2
  exit 2
fi

pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
verdict() { # COND; verdict $? "description"
  if [ "$1" = 0 ]; then pass "$2"; else fail "$2"; fi
}

# jget FILE PATH: a value out of a JSON file (PATH like .a.b), empty if missing.
jget() {
  node -e '
    const fs = require("fs");
    let v; try { v = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { process.exit(0); }
    for (const k of process.argv[2].split(".").filter(Boolean)) v = v == null ? undefined : v[k];
    if (v !== undefined && v !== null) process.stdout.write(typeof v === "object" ? JSON.stringify(v) : String(v));
  ' "$1" "$2"
}

# query_param URL NAME
query_param() {
  node -e 'const u = new URL(process.argv[1]); process.stdout.write(u.searchParams.get(process.argv[2]) ?? "")' "$1" "$2"
}

# start_server NAME ARGS...: starts server.mjs, sets ISSUER and PORT.
start_server() {
  local name="$1"; shift
  node "$HERE/server.mjs" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
  SERVER_PIDS+=("$!")
  for _ in $(seq 1 100); do
    [ -s "$WORK/$name.out" ] && break
    sleep 0.1
  done
  ISSUER="$(jget "$WORK/$name.out" .issuer)"
  PORT="$(jget "$WORK/$name.out" .port)"
  if [ -z "$ISSUER" ] || [ "$ISSUER" != "http://127.0.0.1:$PORT" ]; then
    echo "FAIL: server $name did not start"; cat "$WORK/$name.err"; exit 1
  fi
}

# pkce: sets VERIFIER and CHALLENGE (S256)
pkce() {
  VERIFIER="$(node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))')"
  CHALLENGE="$(node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' "$VERIFIER")"
}

# authorize CLIENT JAR REDIRECT_URI [EXTRA_QUERY]: runs the user-agent part of the code flow
# (authorize -> login form -> resume -> callback) and sets CALLBACK (the final Location), STEPS (a
# trace), FORMS (how many forms were posted). Uses VERIFIER/CHALLENGE and STATE.
authorize() {
  local client="$1" jar="$2" redirect="$3" extra="${4:-}"
  STATE="st-$RANDOM$RANDOM"
  local url="$ISSUER/auth?response_type=code&client_id=$client&redirect_uri=$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$redirect")&scope=${SCOPE:-openid%20email%20profile%20offline_access}&state=$STATE&code_challenge=$CHALLENGE&code_challenge_method=S256$extra"
  CALLBACK=""; STEPS=""; FORMS=0
  local hops=0 out status location prompt action
  while [ $hops -lt 10 ]; do
    hops=$((hops + 1))
    out="$(curl -sS -o "$WORK/body.html" -D "$WORK/headers.txt" -c "$jar" -b "$jar" -w '%{http_code} %{redirect_url}' "$url")"
    status="${out%% *}"; location="${out#* }"
    STEPS="$STEPS GET:${url#"$ISSUER"}=>$status"
    if [ "$status" = 303 ] || [ "$status" = 302 ]; then
      if [[ "$location" == "$redirect"* ]]; then CALLBACK="$location"; return 0; fi
      url="$location"; continue
    fi
    if [ "$status" != 200 ]; then return 1; fi
    # A devInteractions form: hidden prompt=login (or consent, which this server should never show).
    prompt="$(sed -n 's/.*name="prompt" value="\([a-z]*\)".*/\1/p' "$WORK/body.html" | head -1)"
    action="$(sed -n 's/.*<form[^>]*action="\([^"]*\)".*/\1/p' "$WORK/body.html" | head -1)"
    [ -n "$action" ] || return 1
    FORMS=$((FORMS + 1))
    if [ "$prompt" = login ]; then
      out="$(curl -sS -o /dev/null -c "$jar" -b "$jar" -w '%{http_code} %{redirect_url}' \
        --data-urlencode prompt=login --data-urlencode "login=${LOGIN:-alice}" --data-urlencode password=anything "$action")"
    else
      out="$(curl -sS -o /dev/null -c "$jar" -b "$jar" -w '%{http_code} %{redirect_url}' --data-urlencode "prompt=$prompt" "$action")"
    fi
    status="${out%% *}"; location="${out#* }"
    STEPS="$STEPS POST($prompt):${action#"$ISSUER"}=>$status"
    [ "$status" = 303 ] || return 1
    if [[ "$location" == "$redirect"* ]]; then CALLBACK="$location"; return 0; fi
    url="$location"
  done
  return 1
}

# token CLIENT OUTFILE FORM_ARGS...: POST /token with the client's auth method; prints the status.
token() {
  local client="$1" outfile="$2"; shift 2
  local auth=()
  case "$client" in
    basic-client) auth=(-u basic-client:basic-secret) ;;
    post-client) auth=(--data-urlencode client_id=post-client --data-urlencode client_secret=post-secret) ;;
    public-client) auth=(--data-urlencode client_id=public-client) ;;
    *) auth=() ;;
  esac
  curl -sS -o "$outfile" -w '%{http_code}' "${auth[@]}" "$@" "$ISSUER/token"
}

userinfo() { # userinfo ACCESS_TOKEN OUTFILE -> status
  curl -sS -o "$2" -w '%{http_code}' -H "Authorization: Bearer $1" "$ISSUER/me"
}

stats() { curl -sS "$ISSUER/__test/stats" >"$WORK/stats.json"; jget "$WORK/stats.json" ".$1"; }

# ------------------------------------------------------------------ main server: defaults (no rotation)
start_server main
echo "# main server $ISSUER (defaults: no rotation, PKCE required, access TTL 3600)"

curl -sS "$ISSUER/.well-known/openid-configuration" >"$WORK/disc.json"
[ "$(jget "$WORK/disc.json" .issuer)" = "$ISSUER" ]; verdict $? "discovery issuer"
[ "$(jget "$WORK/disc.json" .authorization_endpoint) $(jget "$WORK/disc.json" .token_endpoint) $(jget "$WORK/disc.json" .userinfo_endpoint) $(jget "$WORK/disc.json" .revocation_endpoint)" = "$ISSUER/auth $ISSUER/token $ISSUER/me $ISSUER/token/revocation" ]; verdict $? "discovery endpoints /auth /token /me /token/revocation"
[ "$(jget "$WORK/disc.json" .code_challenge_methods_supported)/$(jget "$WORK/disc.json" .authorization_response_iss_parameter_supported)" = '["S256"]/true' ]; verdict $? "discovery S256 + iss parameter"

curl -sS -X POST "$ISSUER/__test/reset-stats" >/dev/null
declare -A RT AT
for client in basic-client post-client public-client; do
  CB_PORT=$((20000 + RANDOM % 20000))
  REDIRECT="http://127.0.0.1:$CB_PORT/oauth/callback"
  JAR="$WORK/jar-$client.txt"
  LOGIN="user-$client"
  pkce
  if authorize "$client" "$JAR" "$REDIRECT"; then
    pass "$client: authorize -> login -> 303 to loopback port $CB_PORT ($STEPS)"
  else
    fail "$client: authorize flow ($STEPS)"; cat "$WORK/body.html" | head -40; continue
  fi
  CODE="$(query_param "$CALLBACK" code)"
  [ -n "$CODE" ] && [ "$(query_param "$CALLBACK" state)" = "$STATE" ] && [ "$(query_param "$CALLBACK" iss)" = "$ISSUER" ]; verdict $? "$client: callback has code, state, iss"
  [ "$FORMS" = 1 ]; verdict $? "$client: exactly one form (login), no consent"

  st="$(token "$client" "$WORK/tok.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
    --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
  AT[$client]="$(jget "$WORK/tok.json" .access_token)"
  RT[$client]="$(jget "$WORK/tok.json" .refresh_token)"
    [ "$st" = 200 ] && [ -n "${AT[$client]}" ] && [ -n "${RT[$client]}" ] && [ -n "$(jget "$WORK/tok.json" .id_token)" ] \
    && [ "$(jget "$WORK/tok.json" .token_type)" = Bearer ] && [ "$(jget "$WORK/tok.json" .expires_in)" = 3600 ]; verdict $? "$client: code exchange 200 with access, refresh and id token (got $st $(head -c 200 "$WORK/tok.json"))"

  st="$(userinfo "${AT[$client]}" "$WORK/me.json")"
  [ "$st" = 200 ] \
    && [ "$(jget "$WORK/me.json" .sub)" = "$LOGIN" ] && [ "$(jget "$WORK/me.json" .email)" = "$LOGIN@example.test" ]; verdict $? "$client: /me names the account (got $st $(cat "$WORK/me.json"))"

  st="$(token "$client" "$WORK/ref.json" --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=${RT[$client]}")"
  NEW_AT="$(jget "$WORK/ref.json" .access_token)"
  [ "$st" = 200 ] \
    && [ -n "$NEW_AT" ] && [ "$NEW_AT" != "${AT[$client]}" ] && [ "$(jget "$WORK/ref.json" .refresh_token)" = "${RT[$client]}" ]; verdict $? "$client: refresh 200, new access token, same refresh token (no rotation)"
  st="$(userinfo "$NEW_AT" "$WORK/me.json")"
  [ "$st" = 200 ] && [ "$(jget "$WORK/me.json" .sub)" = "$LOGIN" ]; verdict $? "$client: /me with refreshed access token"
  AT[$client]="$NEW_AT"
done

[ "$(stats tokenRequests)/$(stats authorizationCode)/$(stats refreshToken)/$(stats grantSuccess)/$(stats grantError)" = "6/3/3/6/0" ]
verdict $? "stats after 3 flows: tokenRequests=6 authorizationCode=3 refreshToken=3 ($(cat "$WORK/stats.json"))"

# Reusing an authorization code fails AND revokes everything issued from it (RFC 6749 4.1.2).
pkce
REDIRECT="http://127.0.0.1:40000/oauth/callback"
LOGIN=user-public-client
authorize public-client "$WORK/jar-reuse.txt" "$REDIRECT"
CODE="$(query_param "$CALLBACK" code)"
st="$(token public-client "$WORK/t1.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
st2="$(token public-client "$WORK/t2.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
[ "$st" = 200 ] && [ "$st2" = 400 ] && [ "$(jget "$WORK/t2.json" .error)" = invalid_grant ]; verdict $? "code reuse -> 400 invalid_grant"
st="$(token public-client "$WORK/t3.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$(jget "$WORK/t1.json" .refresh_token)")"
[ "$st" = 400 ] && [ "$(jget "$WORK/t3.json" .error)" = invalid_grant ]; verdict $? "code reuse revoked the refresh token from the first exchange"
# The redirect_uri at /token must be the exact one (same port) used at /auth.
pkce
authorize public-client "$WORK/jar-reuse.txt" "$REDIRECT"
st="$(token public-client "$WORK/t4.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query_param "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=http://127.0.0.1:40009/oauth/callback" --data-urlencode "code_verifier=$VERIFIER")"
[ "$st" = 400 ] && [ "$(jget "$WORK/t4.json" .error)" = invalid_grant ]; verdict $? "token redirect_uri with another port than at /auth -> invalid_grant"

# Same user agent again: the session cookie skips the login form.
pkce
REDIRECT="http://127.0.0.1:40001/oauth/callback"
LOGIN=user-public-client
if authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT" && [ "$FORMS" = 0 ]; then
  pass "second authorization in the same cookie jar: no form, straight 303 ($STEPS)"
else fail "second authorization in the same cookie jar ($STEPS)"; fi
# prompt=login forces the form again.
pkce
if authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT" "&prompt=login" && [ "$FORMS" = 1 ]; then
  pass "prompt=login shows the login form again ($STEPS)"
else fail "prompt=login ($STEPS)"; fi

# prompt=consent (some clients send it to get offline_access) brings a consent form: POST prompt=consent.
pkce
if authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT" "&prompt=consent" && [ "$FORMS" = 1 ] && [[ "$STEPS" == *"POST(consent)"* ]]; then
  pass "prompt=consent shows one consent form, posting prompt=consent finishes ($STEPS)"
else fail "prompt=consent ($STEPS)"; fi

# Without offline_access a refresh token still comes (issueRefreshToken hook); without openid there is
# no id_token and /me refuses the access token.
pkce
SCOPE=email authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT"
st="$(token public-client "$WORK/t.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query_param "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
[ "$st" = 200 ] && [ -n "$(jget "$WORK/t.json" .refresh_token)" ] && [ -z "$(jget "$WORK/t.json" .id_token)" ] && [ "$(jget "$WORK/t.json" .scope)" = email ]
verdict $? "scope=email only: refresh token, no id_token ($(head -c 150 "$WORK/t.json"))"
st="$(userinfo "$(jget "$WORK/t.json" .access_token)" "$WORK/me.json")"
[ "$st" = 403 ]; verdict $? "scope without openid: /me -> 403 ($(cat "$WORK/me.json"))"

# Client authentication must match the registered method.
st="$(curl -sS -o "$WORK/e.json" -w '%{http_code}' -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}" \
  -d client_id=basic-client -d client_secret=basic-secret "$ISSUER/token")"
[ "$st" = 401 ] && [ "$(jget "$WORK/e.json" .error)" = invalid_client ]; verdict $? "basic-client with client_secret_post -> 401 invalid_client"
st="$(curl -sS -o "$WORK/e.json" -w '%{http_code}' -u post-client:post-secret -d grant_type=refresh_token \
  --data-urlencode "refresh_token=${RT[post-client]}" "$ISSUER/token")"
[ "$st" = 401 ] && [ "$(jget "$WORK/e.json" .error)" = invalid_client ]; verdict $? "post-client with client_secret_basic -> 401 invalid_client"
st="$(curl -sS -o "$WORK/e.json" -w '%{http_code}' -u basic-client:wrong -d grant_type=refresh_token \
  --data-urlencode "refresh_token=${RT[basic-client]}" "$ISSUER/token")"
[ "$st" = 401 ] && [ "$(jget "$WORK/e.json" .error)" = invalid_client ]; verdict $? "basic-client wrong secret -> 401 invalid_client"
st="$(token public-client "$WORK/e.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
[ "$st" = 400 ] && [ "$(jget "$WORK/e.json" .error)" = invalid_grant ]; verdict $? "another client's refresh token -> 400 invalid_grant"

# PKCE is required (default): an authorization request without code_challenge is refused at /auth.
out="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$ISSUER/auth?response_type=code&client_id=basic-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A40002%2Foauth%2Fcallback&scope=openid&state=x")"
  [ "${out%% *}" = 303 ] && [ "$(query_param "${out#* }" error)" = invalid_request ]; verdict $? "PKCE required: no code_challenge -> 303 to redirect_uri with error=invalid_request ($out)"
# A redirect_uri that is not the registered loopback one is refused without a redirect.
out="$(curl -sS -o /dev/null -w '%{http_code}' "$ISSUER/auth?response_type=code&client_id=basic-client&redirect_uri=http%3A%2F%2Flocalhost%3A40002%2Foauth%2Fcallback&scope=openid&code_challenge=$CHALLENGE&code_challenge_method=S256")"
[ "$out" = 400 ]; verdict $? "redirect_uri with host localhost (registered 127.0.0.1) -> 400 page, no redirect"
out="$(curl -sS -o /dev/null -w '%{http_code}' "$ISSUER/auth?response_type=code&client_id=basic-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A40002%2Fother&scope=openid&code_challenge=$CHALLENGE&code_challenge_method=S256")"
[ "$out" = 400 ]; verdict $? "redirect_uri with another path -> 400 page, no redirect"

# Failure injection and delay.
curl -sS -X POST "$ISSUER/__test/reset-stats" >/dev/null
curl -sS -X POST "$ISSUER/__test/fail-token?status=503&count=2" >/dev/null
st1="$(token basic-client "$WORK/f1.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
st2="$(token basic-client "$WORK/f2.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
st3="$(token basic-client "$WORK/f3.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
  [ "$st1 $st2 $st3" = "503 503 200" ] && [ "$(jget "$WORK/f1.json" .error)" = temporarily_unavailable ]; verdict $? "fail-token count=2: 503 (JSON error), 503, then 200 ($st1 $st2 $st3 $(cat "$WORK/f1.json"))"
  [ "$(stats tokenRequests)/$(stats refreshToken)/$(stats injectedFailures)/$(stats grantSuccess)" = "3/3/2/1" ]; verdict $? "stats count injected failures: tokenRequests=3 refreshToken=3 injectedFailures=2"
curl -sS -X POST "$ISSUER/__test/fail-token?status=400&count=1&error=invalid_grant" >/dev/null
st="$(token basic-client "$WORK/f4.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
[ "$st" = 400 ] && [ "$(jget "$WORK/f4.json" .error)" = invalid_grant ]; verdict $? "fail-token status=400 error=invalid_grant"

curl -sS -X POST "$ISSUER/__test/delay-token?ms=700" >/dev/null
t0=$(date +%s%N)
st="$(token basic-client "$WORK/d.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
curl -sS -X POST "$ISSUER/__test/delay-token?ms=0" >/dev/null
[ "$st" = 200 ] && [ "$ms" -ge 690 ]; verdict $? "delay-token ms=700: answer 200 after ${ms} ms"

# RFC 7009 revocation of a refresh token (client authenticates as at /token).
st="$(curl -sS -o /dev/null -w '%{http_code}' -d client_id=post-client -d client_secret=post-secret \
  --data-urlencode "token=${RT[post-client]}" -d token_type_hint=refresh_token "$ISSUER/token/revocation")"
st2="$(token post-client "$WORK/r.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[post-client]}")"
[ "$st" = 200 ] && [ "$st2" = 400 ] && [ "$(jget "$WORK/r.json" .error)" = invalid_grant ]; verdict $? "revocation endpoint 200, then refresh -> invalid_grant"

# revoke-all: every grant goes; refresh -> invalid_grant, the access token dies too.
curl -sS -X POST "$ISSUER/__test/revoke-all" >"$WORK/ra.json"
st="$(token basic-client "$WORK/r.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[basic-client]}")"
[ "$st" = 400 ] && [ "$(jget "$WORK/r.json" .error)" = invalid_grant ]; verdict $? "revoke-all ($(cat "$WORK/ra.json")) -> basic-client refresh invalid_grant"
st="$(token public-client "$WORK/r.json" -d grant_type=refresh_token --data-urlencode "refresh_token=${RT[public-client]}")"
[ "$st" = 400 ] && [ "$(jget "$WORK/r.json" .error)" = invalid_grant ]; verdict $? "revoke-all -> public-client refresh invalid_grant"
st="$(userinfo "${AT[public-client]}" "$WORK/me.json")"
[ "$st" = 401 ] && [ "$(jget "$WORK/me.json" .error)" = invalid_token ]; verdict $? "revoke-all -> /me with old access token 401 invalid_token"
# A new authorization after revoke-all works (session kept: no login form).
pkce
REDIRECT="http://127.0.0.1:40003/oauth/callback"
if authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT" && [ "$FORMS" = 0 ]; then
  st="$(token public-client "$WORK/t.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query_param "$CALLBACK" code)" \
    --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
  [ "$st" = 200 ]; verdict $? "after revoke-all a new authorization + exchange works"
else fail "after revoke-all a new authorization ($STEPS)"; fi
curl -sS -X POST "$ISSUER/__test/revoke-all?sessions=1" >"$WORK/ra.json"
pkce
if authorize public-client "$WORK/jar-public-client.txt" "$REDIRECT" && [ "$FORMS" = 1 ]; then
  pass "revoke-all?sessions=1 ($(cat "$WORK/ra.json")) -> login form again"
else fail "revoke-all?sessions=1 -> login form again ($STEPS)"; fi

# ------------------------------------------------------------------ rotation + short access TTL
start_server rotate --rotate --access-ttl 2
echo "# rotate server $ISSUER (--rotate --access-ttl 2)"
pkce
REDIRECT="http://127.0.0.1:40004/oauth/callback"
LOGIN=rot-user
if authorize post-client "$WORK/jar-rot.txt" "$REDIRECT"; then
  st="$(token post-client "$WORK/t.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query_param "$CALLBACK" code)" \
    --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
  RT0="$(jget "$WORK/t.json" .refresh_token)"; AT0="$(jget "$WORK/t.json" .access_token)"
  [ "$st" = 200 ] && [ "$(jget "$WORK/t.json" .expires_in)" = 2 ]; verdict $? "rotate: exchange 200, expires_in=2"
  sleep 3
  st="$(userinfo "$AT0" "$WORK/me.json")"
  [ "$st" = 401 ]; verdict $? "rotate: access token expired after 3 s -> /me 401"
  st="$(token post-client "$WORK/r1.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT0")"
  RT1="$(jget "$WORK/r1.json" .refresh_token)"
  [ "$st" = 200 ] && [ -n "$RT1" ] && [ "$RT1" != "$RT0" ]; verdict $? "rotate: refresh 200 returns a new refresh token"
  st="$(userinfo "$(jget "$WORK/r1.json" .access_token)" "$WORK/me.json")"
  [ "$st" = 200 ] && [ "$(jget "$WORK/me.json" .email)" = rot-user@example.test ]; verdict $? "rotate: refreshed access token works at /me"
  st="$(token post-client "$WORK/r2.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT0")"
  [ "$st" = 400 ] && [ "$(jget "$WORK/r2.json" .error)" = invalid_grant ]; verdict $? "rotate: reusing the old refresh token -> 400 invalid_grant"
  st="$(token post-client "$WORK/r3.json" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT1")"
  [ "$st" = 400 ] && [ "$(jget "$WORK/r3.json" .error)" = invalid_grant ]; verdict $? "rotate: reuse detection also killed the newest refresh token -> invalid_grant"
  curl -sS "$ISSUER/__test/stats" >"$WORK/rs.json"
  [ "$(jget "$WORK/rs.json" .refreshRotated)" = 1 ] && [ "$(jget "$WORK/rs.json" .refreshReuse)" = 1 ]; verdict $? "rotate: stats count 1 rotation and 1 reuse ($(cat "$WORK/rs.json"))"
  curl -sS "$ISSUER/__test/refreshes?since=0" >"$WORK/rl.json"
  [ "$(jget "$WORK/rl.json" .refreshes.0.outcome)" = rotated ] && [ "$(jget "$WORK/rl.json" .refreshes.1.outcome)" = reuse ] \
    && [ "$(jget "$WORK/rl.json" .refreshes.1.presented)" = "$(jget "$WORK/rl.json" .refreshes.0.presented)" ]; verdict $? "rotate: /__test/refreshes records the rotation and the reuse of the same token"
  curl -sS -X POST "$ISSUER/__test/stated-expires-in?s=0" >/dev/null
  if authorize post-client "$WORK/jar-rot.txt" "$REDIRECT"; then
    st="$(token post-client "$WORK/t5.json" --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query_param "$CALLBACK" code)" \
      --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$VERIFIER")"
    [ "$st" = 200 ] && [ "$(jget "$WORK/t5.json" .expires_in)" = 0 ]; verdict $? "stated-expires-in=0: the answer says expires_in 0"
    st="$(userinfo "$(jget "$WORK/t5.json" .access_token)" "$WORK/me.json")"
    [ "$st" = 200 ]; verdict $? "stated-expires-in=0: the token itself still works"
  else fail "stated-expires-in: authorize ($STEPS)"; fi
  curl -sS -X POST "$ISSUER/__test/stated-expires-in?s=" >/dev/null
else fail "rotate: authorize ($STEPS)"; fi

# ------------------------------------------------------------------ --no-pkce-required, stdin close
start_server nopkce --no-pkce-required
out="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$ISSUER/auth?response_type=code&client_id=basic-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A40005%2Foauth%2Fcallback&scope=openid&state=x")"
[ "${out%% *}" = 303 ] && [[ "${out#* }" == "$ISSUER/interaction/"* ]]; verdict $? "--no-pkce-required: confidential client without code_challenge gets the login page ($out)"
out="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$ISSUER/auth?response_type=code&client_id=public-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A40005%2Foauth%2Fcallback&scope=openid&state=x")"
[ "$(query_param "${out#* }" error)" = invalid_request ]; verdict $? "--no-pkce-required: public client still needs PKCE"

coproc SRV { exec node "$HERE/server.mjs" --port 0 2>/dev/null; }
SPID=$SRV_PID # bash unsets SRV_PID when the coprocess ends
SERVER_PIDS+=("$SPID")
read -r -t 10 line <&"${SRV[0]}"
ISSUER="$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).issuer)' "$line")"
st="$(curl -sS -o /dev/null -w '%{http_code}' "$ISSUER/.well-known/openid-configuration")"
WFD=${SRV[1]}
exec {WFD}>&- # close the server's stdin
gone=no
for _ in $(seq 1 30); do kill -0 "$SPID" 2>/dev/null || { gone=yes; break; }; sleep 0.1; done
[ "$st" = 200 ] && [ "$gone" = yes ]; verdict $? "stdin pipe closed -> server exits (was serving: $st)"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
