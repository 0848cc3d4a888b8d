"""vmemlab: Linux physical memory and the virtio-mem device, simulated for teaching.

    import vmemlab as vm
    m = vm.Machine(boot_memory=4 * vm.GiB, kernel="6.12", seed=0)
    print(m.proc.buddyinfo())

The package core needs only numpy; pictures and widgets live in
``vmemlab.viz`` and are imported only when asked for.
"""

from .constants import (
    EACCES,
    EAGAIN,
    EBUSY,
    EINTR,
    EINVAL,
    EISDIR,
    ENODEV,
    ENOENT,
    ENOMEM,
    ENOSPC,
    ENOTDIR,
    EPERM,
    ERANGE,
    ETXTBSY,
    GiB,
    KiB,
    MiB,
    MigrateType,
    PageKind,
    PageState,
    TiB,
    ZoneType,
    errname,
    format_size,
    parse_size,
)
from .gfp import Gfp, format_gfp, parse_gfp
from .machine import Machine
from .trace import Trace
from .validate import ValidationError

__version__ = "0.1.0"

__all__ = [
    "EACCES", "EAGAIN", "EBUSY", "EINTR", "EINVAL", "EISDIR", "ENODEV", "ENOENT", "ENOMEM",
    "ENOSPC",
    "ENOTDIR", "EPERM", "ERANGE", "ETXTBSY",
    "Gfp", "GiB", "KiB", "Machine", "MiB", "MigrateType", "PageKind", "PageState", "TiB",
    "Trace", "ValidationError", "ZoneType", "errname", "format_gfp", "format_size",
    "parse_gfp", "parse_size",
]
