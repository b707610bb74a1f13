"""Shared test helpers: fakes of the core's interfaces, real meshes, the local model."""
