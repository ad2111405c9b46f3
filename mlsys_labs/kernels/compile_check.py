"""``python -m mlsys_labs.kernels.compile_check`` — the command's short name; the check itself
is :mod:`mlsys_labs.kernels.plumbing.compile_check`."""
from .plumbing.compile_check import main

if __name__ == "__main__":
    raise SystemExit(main())
