"""retentiond.service"""
