#!/usr/bin/env python3
"""An independent gRPC client for auraed: Python grpcio over unix://, plaintext or mutual TLS.

It knows nothing of Aurae's generated code. It checks health and calls
aurae.v0.System/Status with hand-encoded bytes (both requests are empty messages), and
with --reflect it also discovers the API through server reflection, builds the Status
message classes from the reflected descriptors and calls Status through them. It prints
what it got as JSON. Used by the integration tests to prove that auraed speaks standard
gRPC to a stock client.

Channel options are exactly the --option flags given: none means grpcio's defaults
(on a unix: target grpcio then sends the %-encoded socket path as :authority).

usage: grpc_client.py SOCKET [--tls CA_CERT CLIENT_CERT CLIENT_KEY] [--reflect]
                             [--option NAME=VALUE]...
"""

import argparse
import json
import sys

import grpc


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket")
    parser.add_argument("--tls", nargs=3, metavar=("CA_CERT", "CLIENT_CERT", "CLIENT_KEY"))
    parser.add_argument("--reflect", action="store_true")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    return parser.parse_args()


def channel_for(args: argparse.Namespace) -> grpc.Channel:
    options = [tuple(option.split("=", 1)) for option in args.option]
    target = f"unix://{args.socket}"
    if args.tls is None:
        return grpc.insecure_channel(target, options=options)
    ca, cert, key = (open(path, "rb").read() for path in args.tls)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    return grpc.secure_channel(target, credentials, options=options)


def reflected(channel: grpc.Channel) -> dict:
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindMethodByName("aurae.v0.System.Status")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    status_call = channel.unary_unary(
        "/aurae.v0.System/Status",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    status = status_call(request_class(), timeout=10)
    return {
        "services": services,
        "status": json_format.MessageToDict(status, preserving_proto_field_name=True),
    }


def main() -> int:
    args = parse_args()
    identity = lambda b: b
    with channel_for(args) as channel:
        raw = lambda path: channel.unary_unary(
            path, request_serializer=identity, response_deserializer=identity
        )
        # HealthCheckRequest{service: ""} and StatusRequest{} are empty messages; the
        # replies are printed as hex for the test to decode.
        health = raw("/grpc.health.v1.Health/Check")(b"", timeout=10)
        # A second and third call on the same connection: grpcio refers to its HPACK
        # dynamic table from the second request on.
        status = raw("/aurae.v0.System/Status")(b"", timeout=10)
        again = raw("/grpc.health.v1.Health/Check")(b"", timeout=10)
        reply = {"health": health.hex(), "health_again": again.hex(), "status_raw": status.hex()}
        if args.reflect:
            reply.update(reflected(channel))
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
