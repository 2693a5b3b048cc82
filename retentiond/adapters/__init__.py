"""retentiond.adapters"""
