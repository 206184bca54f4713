"""`python -m rhetor` — see rhetor.cli. The collector is held off while start-up imports and builds (rhetor.heap)."""

from rhetor import heap

heap.hold()

from rhetor.cli import main  # noqa: E402

raise SystemExit(main())
