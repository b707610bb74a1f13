"""Generated protobuf and gRPC code for the agentmesh.v1 API (see the .proto files beside it)."""
