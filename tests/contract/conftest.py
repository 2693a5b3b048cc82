"""Fixtures of the contract suites: the live S3 server (``tests/s3server.py``)."""

from __future__ import annotations

from tests.s3server import moto_s3

__all__ = ["moto_s3"]
