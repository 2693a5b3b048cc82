"""retentiond.crypto"""
