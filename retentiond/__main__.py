from retentiond.cli import entrypoint

entrypoint()
