#!/usr/bin/env bash
# A private CA and server certificates for daihuo's origins (and edges' client certificates),
# with openssl. The edges trust DIR/ca.pem (`[upstream] ca`); each origin serves
# DIR/NAME.pem and DIR/NAME-key.pem (`[http] cert`/`key`).
#
#   scripts/private-ca.sh DIR NAME [NAME...]
#
# NAME is what edges ask for: the origin's `server_name` in `[[upstream.origins]]` (else its
# `name`), or an IP address. Run it again with new names to add certificates: an existing CA
# in DIR is kept.
#
# Why not `openssl req -x509` alone: that makes a CA certificate (basicConstraints CA:TRUE),
# which webpki (rustls) refuses as a server certificate, so edges would find every origin
# down. A server certificate must be an end-entity certificate signed by the CA.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 DIR NAME [NAME...]" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
cd "$dir"

if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca-key.pem -out ca.pem -days 3650 -subj "/CN=daihuo private CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  chmod 600 ca-key.pem
fi

for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    san="IP:$name"
  else
    san="DNS:$name"
  fi
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name-key.pem" -out "$name.csr" -subj "/CN=$name"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -out "$name.pem" -days 825 -extfile <(printf '%s\n' \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectAltName=$san")
  rm -f "$name.csr"
  chmod 600 "$name-key.pem"
  echo "$dir/$name.pem and $dir/$name-key.pem (signed by $dir/ca.pem)"
done
