import sys

from .zygote import delegate

code = delegate(sys.argv[1:])   # a job handed to the workflow's zygote (bench/zygote.py), if there is one
if code is not None:
    raise SystemExit(code)

from .cli import main  # noqa: E402

main()
