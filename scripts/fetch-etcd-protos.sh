#!/usr/bin/env bash
# Extracts etcd v3's .proto files from Debian's golang-etcd-server-dev package into DEST, with the
# gogoproto and google.api imports and options removed so that plain protoc compiles them.
#
# Usage: fetch-etcd-protos.sh DEST
# The package is fetched with `apt-get download` (about 1 s, no dependencies, nothing installed);
# if it is already installed, its files are used as they are. No etcd file is kept in the repository.
set -euo pipefail
dest=${1:?usage: fetch-etcd-protos.sh DEST}
readonly PACKAGE=golang-etcd-server-dev
readonly PROTOS=(
  mvcc/mvccpb/kv.proto
  auth/authpb/auth.proto
  etcdserver/etcdserverpb/rpc.proto
  etcdserver/api/v3election/v3electionpb/v3election.proto
)
readonly GOSRC=usr/share/gocode/src/go.etcd.io/etcd

if [[ -f $dest/.complete ]]; then exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -f /$GOSRC/${PROTOS[2]} ]]; then
  root=/$GOSRC
else
  (cd "$work" && apt-get download -q "$PACKAGE" >download.log 2>&1) || {
    # Stale or missing package lists on a fresh machine.
    (apt-get update -q >/dev/null 2>&1 || sudo -n apt-get update -q >/dev/null 2>&1) || true
    (cd "$work" && apt-get download -q "$PACKAGE" >download.log 2>&1) || {
      cat "$work/download.log" >&2
      echo "fetch-etcd-protos: could not download $PACKAGE" >&2
      exit 1
    }
  }
  dpkg-deb -x "$work"/"$PACKAGE"_*.deb "$work/x"
  root=$work/x/$GOSRC
fi

rm -rf "$dest"
for proto in "${PROTOS[@]}"; do
  mkdir -p "$dest/etcd/$(dirname "$proto")"
  # Drop gogoproto/google.api imports, file options, multi-line google.api.http blocks and
  # inline [(gogoproto...)] field options. None of them changes the wire format.
  perl -0pe '
    s/^import "(gogoproto\/gogo|google\/api\/annotations)\.proto";\n//mg;
    s/^option \(gogoproto\.[^;]*;\n//mg;
    s/\s*option \(google\.api\.http\) = (\{(?:[^{}]++|(?-1))*\});//sg;
    s/\s*\[\(gogoproto\.[^\]]*\]//g;
  ' "$root/$proto" >"$dest/etcd/$proto"
done
dpkg-deb -f "$work"/"$PACKAGE"_*.deb Version >"$dest/.version" 2>/dev/null ||
  dpkg-query -W -f='${Version}' "$PACKAGE" >"$dest/.version"
touch "$dest/.complete"
