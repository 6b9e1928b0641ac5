#!/bin/sh
# generate.sh regenerates the Go code for SPIRE's plugin protocol from the
# .proto files in this directory. It needs protoc (Debian: protobuf-compiler,
# tested with 3.21.12) and installs the pinned code generators below into a
# temporary GOBIN when the ones on PATH are not exactly these versions.
#
# Usage (from anywhere):  proto/generate.sh    or    go generate ./proto
set -eu

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

cd "$(dirname "$0")"

command -v protoc >/dev/null 2>&1 || {
	echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2
	exit 1
}

# Include path for google/protobuf/empty.proto.
INCLUDE=/usr/include
if [ ! -f "$INCLUDE/google/protobuf/empty.proto" ]; then
	INCLUDE="$(dirname "$(dirname "$(command -v protoc)")")/include"
fi

gobin="$(go env GOPATH)/bin"
tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

have() { # have <binary> <version-substring>
	[ -x "$gobin/$1" ] && "$gobin/$1" --version 2>/dev/null | grep -q -- "$2\$"
}
if ! have protoc-gen-go "$PROTOC_GEN_GO_VERSION" ||
	! have protoc-gen-go-grpc "${PROTOC_GEN_GO_GRPC_VERSION#v}"; then
	tmp="$(mktemp -d)"
	gobin="$tmp"
	GOBIN="$tmp" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
	GOBIN="$tmp" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

find spire -name '*.proto' | sort | while read -r f; do
	protoc -I . -I "$INCLUDE" \
		--plugin=protoc-gen-go="$gobin/protoc-gen-go" \
		--plugin=protoc-gen-go-grpc="$gobin/protoc-gen-go-grpc" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		"$f"
done
