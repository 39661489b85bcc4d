"""``python -m promptsearch``: the ``promptsearch`` command (:func:`promptsearch.cli.main`)."""

from __future__ import annotations

import sys

from promptsearch.cli import main

if __name__ == "__main__":
    sys.exit(main())
