"""The read-only FUSE view of albums, timeline, favorites and libraries (pyfuse3, `filmroll serve --mount PATH`).

Split like borg's `vfs.py` / `fuse.py` (DESIGN.md §6): `tree` computes what folders and files exist (plain Python
over the index, tested without a mount), `operations` is the thin pyfuse3 adapter, `invalidation` is the one place
that tells the kernel to forget, and `mount` runs the whole as a task in `serve`'s nursery.
"""
