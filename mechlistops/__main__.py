"""`python -m mechlistops`: the same as the `mechlistops` command."""

from mechlistops.cli import main

raise SystemExit(main())
