"""OpenLineage facets of the Lucca operators (the ``openlineage`` extra).

Filled by the lineage work of issue 14: ``get_openlineage_facets_on_complete`` and
``get_openlineage_facets_on_failure`` read the operator's parameters and ``self.run_summary``
(the summary its last ``execute`` returned).
"""

from __future__ import annotations

from typing import Any


class LineageMixin:
    """What the OpenLineage listener asks a Lucca operator about its inputs and outputs."""

    #: The summary the last ``execute`` returned (an ``ExtractionSummary`` or
    #: ``ReconcileSummary``); None before, or when it failed.
    run_summary: Any = None
