"""filmroll's core: configuration, the LMDB index, users and auth, libraries, the daemon's wiring.

Nothing in here knows about HTTP or FUSE; `api/` and `fsview/` are adapters over these services.
"""

__version__ = "0.1.0"
