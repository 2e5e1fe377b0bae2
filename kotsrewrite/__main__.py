"""``python -m kotsrewrite``."""

from ._cli import main

raise SystemExit(main())
