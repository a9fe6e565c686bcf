#!/usr/bin/env bash
# Runs README.md's "Chat between two terminals" commands literally, with HUSH_PASSPHRASE set
# and the relay in the background, and checks what a user would see. Fails if the README and
# this script drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."

grep -q 'target/release/hush --profile /tmp/hush-demo/alice send bob "hello bob"' README.md
rm -rf /tmp/hush-demo
cargo build --release -p hush-relay -p hush
target/release/hush-relay --listen 127.0.0.1:7443 --data /tmp/hush-demo/relay > /tmp/hush-demo-relay.log 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "listening on" /tmp/hush-demo-relay.log 2>/dev/null && break; sleep 0.1; done
grep -q "relay public key:" /tmp/hush-demo-relay.log

export HUSH_PASSPHRASE='correct horse battery staple'
target/release/hush --profile /tmp/hush-demo/alice init --name alice --relay 127.0.0.1:7443
target/release/hush --profile /tmp/hush-demo/bob init --name bob --relay 127.0.0.1:7443
target/release/hush --profile /tmp/hush-demo/alice send bob "hello bob"
target/release/hush --profile /tmp/hush-demo/bob recv --wait 2 | tee /tmp/hush-demo-bob.txt
grep -q "alice: hello bob" /tmp/hush-demo-bob.txt
target/release/hush --profile /tmp/hush-demo/bob send alice "hi alice"
target/release/hush --profile /tmp/hush-demo/alice recv --wait 2 | tee /tmp/hush-demo-alice.txt
grep -q "bob: hi alice" /tmp/hush-demo-alice.txt
target/release/hush --profile /tmp/hush-demo/alice verify bob | tee /tmp/hush-demo-verify.txt
alice_number=$(sed -n '2,4p' /tmp/hush-demo-verify.txt | tr -d ' \n')
bob_number=$(target/release/hush --profile /tmp/hush-demo/bob verify alice | sed -n '2,4p' | tr -d ' \n')
[ "${#alice_number}" -eq 60 ] && [ "$alice_number" = "$bob_number" ]
target/release/hush --profile /tmp/hush-demo/alice history bob | tee /tmp/hush-demo-history.txt
grep -q "me: hello bob (delivered)" /tmp/hush-demo-history.txt
grep -q "bob: hi alice" /tmp/hush-demo-history.txt
echo "quickstart: OK"
