"""``python -m pipeline`` is the ``newsletter`` command."""

from pipeline.entry import main

main()
