"""Generated protobuf and gRPC code for KEDA's external scaler contract (externalscaler.proto,
kept as KEDA publishes it: see README.md beside it), which the scheduler serves."""
