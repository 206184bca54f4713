"""`python -m rhetor` — see rhetor.cli. The collector is held off while start-up imports and builds (rhetor.heap).

Pydantic's plugin discovery is off unless the operator sets PYDANTIC_DISABLE_PLUGINS: Rhetor uses no pydantic
plugin, and discovering them scans every installed distribution's entry points when the first model is built
(~32M instructions, ~1.5% of start-up; callgrind of a one-model script with and without).
"""

import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")

from rhetor import heap

heap.hold()

from rhetor.cli import main  # noqa: E402

raise SystemExit(main())
