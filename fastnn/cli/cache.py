"""``fastnn cache``: where fastnn caches its generated and compiled kernels, and emptying it."""

from __future__ import annotations

HELP = "show (`fastnn cache`) or empty (`fastnn cache clear`) the kernel cache directory"


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=("info", "clear"), default="info",
                        help="info (default): the directory and its size; clear: empty it")


def run(args) -> int:
    from .. import _cache
    from .info import _size

    if args.action == "clear":
        root = _cache.cache_dir()
        freed = _cache.clear()
        print(f"cleared {root} ({_size(freed)} freed); kernels compile again on first use")
        return 0
    d = _cache.describe()
    print(f"{d['dir']}  {_size(d['bytes'])}")
    print(f"  generated kernel source: {d['kernel_source']}")
    print(f"  compiled kernels:        {d['compiled_kernels']}")
    return 0
