"""Reading a real Linux machine's memory state, read-only.

``capture`` reads the files (the only module here that touches a
filesystem); ``proctext`` and ``sysfs`` turn their text into plain data and
back; ``kpageflags`` maps /proc/kpageflags words onto vmemlab's page states;
``pages`` builds, counts and draws the per-pfn arrays.  ``vmemlab.snapshot``
composes them into a ``RealSnapshot``.  Nothing here ever writes to /proc
or /sys.
"""
