#!/usr/bin/env bash
# Writes a few valid inputs per target into fuzz/corpus/<target>/ (not committed) so each run
# starts from the shapes real clients and operators send. Run from anywhere; idempotent.
set -euo pipefail
cd "$(dirname "$0")"

seed() { # target name bytes...
  local dir="corpus/$1"
  mkdir -p "$dir"
  printf '%b' "$3" >"$dir/seed-$2"
}

seed scope pull 'repository:team/app:pull'
seed scope push 'repository:team/app:pull,push'
seed scope host 'repository:localhost:5000/team/app:pull'
seed scope class 'repository(plugin):a/b-c__d.e:*'
seed scope catalog 'registry:catalog:*'
seed scope many 'repository:a:pull repository:a:push\nrepository:b:delete'
# Large inputs (run with -max_len=131072): 16 000 distinct actions in one scope (64 KiB, the
# issue 15 attack), and 2 000 lines of one resource with one action each (merging).
python3 - <<'PY'
import itertools, string
words = (''.join(p) for n in itertools.count(1) for p in itertools.product(string.ascii_lowercase, repeat=n))
actions = ','.join(itertools.islice(words, 16000))
open('corpus/scope/seed-16000-actions', 'w').write('repository:team/app:' + actions)
open('corpus/scope/seed-merge-2000', 'w').write('\n'.join(f'repository:a:{w}' for w in ['pull', 'push', 'delete', 'x'] * 500))
PY

# Mode byte 0 = raw header value, 1 = built from user NUL password.
seed basic_header raw '\x00Basic YWxpY2U6czNjcmV0'
seed basic_header raw-colon '\x00basic  YWxpY2U6cGE6c3M= '
seed basic_header built '\x07alice\x00pa:ss'

seed token_form password 'grant_type=password&service=registry.test&client_id=docker&access_type=offline&username=alice&password=s3cret&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository:b:pull'
seed token_form refresh 'grant_type=refresh_token&service=registry.test&client_id=docker&refresh_token=rt1.abc.def&scope=repository%3Aa%3Apull+repository%3Ab%3Apush'

# Mode byte 0 = raw token, 1 = signed payload JSON, 2 = issue/verify round trip.
seed refresh_token raw '\x00rt1.eyJzdWIiOiJhbGljZSJ9.AAAA'
# In signed payloads, PWV stands for alice's password fingerprint. Round trips start with a
# little-endian u64 lifetime (here 3600 s).
seed refresh_token signed '\x01{"sub":"alice","aud":"registry.test","iat":1800000000,"exp":1800003600,"pwv":"PWV"}'
seed refresh_token signed-wrong '\x01{"sub":"alice","aud":"registry.test","iat":1800000000,"exp":1800003600,"pwv":"x"}'
seed refresh_token roundtrip '\x02\x10\x0e\x00\x00\x00\x00\x00\x00alice\x00$2y$04$hash\x00registry.test'

hash='$2y$04$Q0BM5JqJyp/ocGdwb0dGEeLxnSp0bn0ExqzKBCXjbk5MKYSRj3ZUS'
seed htpasswd two "# users\n\nalice:${hash}\nbob:${hash/\$2y\$/\$2b\$}\r\n"

# Mode byte even = YAML, odd = TOML; after a 0xFF byte, KEY=VALUE lines become REGAUTH_KEY.
seed config yaml '\x00server:\n  listen: 127.0.0.1:7000\ntoken:\n  issuer: regauth\n  ttl_seconds: 120\n  services: [registry.test]\nacl:\n  - match: {account: "/admin|ops/", name: "**"}\n    actions: ["*"]\n  - match: {account: "", name: "${account}/*"}\n    actions: [pull]\n\xffTOKEN__ISSUER=env\nACCESS__ANONYMOUS=pull,push\n'
seed config toml '\x01[server]\nlisten = "[::]:5001"\n[key]\nsource = "file"\npath = "keys/a.pem"\nnext = "keys/b.pem"\n[auth]\nrefresh_ttl_seconds = 600\n[users.alice]\ngroups = ["dev"]\n'
echo "seeded: $(find corpus -name 'seed-*' | wc -l) files"
