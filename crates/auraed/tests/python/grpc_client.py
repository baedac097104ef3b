#!/usr/bin/env python3
"""An independent gRPC client for auraed: Python grpcio over unix:// with mutual TLS.

It knows nothing of Aurae's generated code. It checks health with hand-encoded bytes,
discovers the API through server reflection, builds the Status message classes from
the reflected descriptors, calls aurae.v0.System/Status and prints the reply as JSON.
Used by the integration tests to prove that auraed speaks standard gRPC.

usage: grpc_client.py SOCKET CA_CERT CLIENT_CERT CLIENT_KEY
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    socket, ca, cert, key = sys.argv[1:5]
    read = lambda path: open(path, "rb").read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    options = [("grpc.ssl_target_name_override", "auraed"), ("grpc.default_authority", "auraed")]
    with grpc.secure_channel(f"unix://{socket}", credentials, options=options) as channel:
        identity = lambda b: b
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=identity,
            response_deserializer=identity,
        )
        # HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status: SERVING} is 08 01.
        health = check(b"", timeout=10)

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
        print(
            json.dumps(
                {
                    "health": health.hex(),
                    "services": services,
                    "status": json_format.MessageToDict(status, preserving_proto_field_name=True),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
