"""retentiond.core"""
