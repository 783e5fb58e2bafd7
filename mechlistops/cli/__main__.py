"""`python -m mechlistops.cli`: the same as the `mechlistops` command."""

from mechlistops.cli import main

raise SystemExit(main())
