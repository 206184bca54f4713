"""`python -m rhetor` — see rhetor.cli."""

from rhetor.cli import main

raise SystemExit(main())
