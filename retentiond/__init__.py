"""retentiond: make call-recording storage obey the law (GDPR, CNIL)."""

__version__ = "0.1.0"
