"""``python -m xnormcorre.cli``."""

from . import main

raise SystemExit(main())
