"""``python -m locket_guest`` is ``locket-py``."""

from .cli import main

main()
