"""The read-only FUSE view of albums, timeline and libraries (pyfuse3).

Planned split (DESIGN.md §6): a plain-Python tree model computing what folders and files exist, testable without a
mount, and a thin pyfuse3 `Operations` adapter over it. Not built yet: `filmroll serve --mount` refuses to start.
"""
