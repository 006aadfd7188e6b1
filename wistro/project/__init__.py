"""A project on disk: its paths, discovery of its step files, stand-ins for broken ones, the lock, activation."""
