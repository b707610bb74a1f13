"""Fixtures of the integration tests: real servers and processes on 127.0.0.1."""

from tests.support.local_model import local_model

__all__ = ["local_model"]
