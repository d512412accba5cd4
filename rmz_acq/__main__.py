"""``python -m rmz_acq`` is the ``rmz-acq`` command."""

from .cli import main

main()
