"""Offline tools that turn videos into training shards (`build`) or make test videos (`synthetic`)."""
