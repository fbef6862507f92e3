#!/bin/sh
# Issues the compose topology's TLS material once, into the folder given (default /certs):
#
#   ca/ca.crt                          the private CA that every client trusts
#   eventstore/node.crt, node.key      KurrentDB's certificate: eventstore, localhost, 127.0.0.1
#   postgres/server.crt, server.key    PostgreSQL's certificate: postgres, localhost, 127.0.0.1
#   rabbitmq/server.crt, server.key    RabbitMQ's certificate: rabbitmq, localhost, 127.0.0.1
#   nats/server.crt, server.key        NATS's certificate: nats, localhost, 127.0.0.1
#
# The CA's key signs these certificates and is then deleted: nothing else can be issued
# under this CA, so a stolen volume cannot mint a certificate the clients would trust. Each
# private key is readable only by the user its server runs as (EVENTSTORE_UID, POSTGRES_UID,
# RABBITMQ_UID, NATS_UID, when run as root). Run again, it keeps what is there; delete the folder (in compose, the
# `certificates` volume) to issue new certificates, then restart every service.
set -eu

out="${1:-/certs}"
# Certificates outlive a deployment's restarts but not its upgrades: about two years.
days="${CERTIFICATE_DAYS:-825}"
eventstore_uid="${EVENTSTORE_UID:-1000}"
postgres_uid="${POSTGRES_UID:-999}"
rabbitmq_uid="${RABBITMQ_UID:-999}"
nats_uid="${NATS_UID:-0}"

if [ -f "$out/ca/ca.crt" ]; then
    echo "certificates already in $out; delete them to issue new ones"
    exit 0
fi

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/ca" "$out/eventstore" "$out/postgres" "$out/rabbitmq" "$out/nats"

openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=inventory-ledger private CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/ca.key" -out "$work/ca.crt"

# issue FOLDER NAME COMMON_NAME SUBJECT_ALT_NAMES OWNER_UID
issue() {
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$3" \
        -keyout "$out/$1/$2.key" -out "$work/$1.csr"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=$4" >"$work/$1.ext"
    openssl x509 -req -sha256 -days "$days" -in "$work/$1.csr" \
        -CA "$work/ca.crt" -CAkey "$work/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$work/$1.ext" -out "$out/$1/$2.crt"
    chmod 0644 "$out/$1/$2.crt"
    chmod 0600 "$out/$1/$2.key"
    if [ "$(id -u)" = 0 ]; then
        chown "$5" "$out/$1/$2.key" "$out/$1/$2.crt"
    fi
}

# KurrentDB compares the common names of node certificates within a cluster; this is the
# name its own certificate generator gives every node.
issue eventstore node eventstoredb-node "DNS:eventstore,DNS:localhost,IP:127.0.0.1" "$eventstore_uid"
issue postgres server postgres "DNS:postgres,DNS:localhost,IP:127.0.0.1" "$postgres_uid"
issue rabbitmq server rabbitmq "DNS:rabbitmq,DNS:localhost,IP:127.0.0.1" "$rabbitmq_uid"
issue nats server nats "DNS:nats,DNS:localhost,IP:127.0.0.1" "$nats_uid"

# The CA certificate last: its presence says the set is complete.
cp "$work/ca.crt" "$out/ca/ca.crt.partial"
chmod 0644 "$out/ca/ca.crt.partial"
chmod 0755 "$out" "$out/ca" "$out/eventstore" "$out/postgres" "$out/rabbitmq" "$out/nats"
mv "$out/ca/ca.crt.partial" "$out/ca/ca.crt"
echo "issued the CA and the eventstore, postgres, rabbitmq and nats certificates into $out"
