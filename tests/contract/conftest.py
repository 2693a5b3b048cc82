"""Fixtures of the contract suites: the live S3 servers, moto (``tests/s3server.py``) and
Ceph RGW (``tests/cephrgw.py``)."""

from __future__ import annotations

from tests.cephrgw import ceph_rgw
from tests.s3server import moto_s3

__all__ = ["ceph_rgw", "moto_s3"]
