"""Apache Airflow provider for Lucca: realized trainings into object storage.

Kept import-light: Airflow reads :func:`get_provider_info` at start-up through the
``apache_airflow_provider`` entry point, before any hook is needed.
"""

from __future__ import annotations

__version__ = "0.2.0"

CONN_TYPE = "lucca"

# After the constants above, which it reads. Also importable from here: the entry point named
# ``airflow_provider_lucca:get_provider_info`` before it had its own module.
from airflow_provider_lucca.get_provider_info import get_provider_info  # noqa: E402

__all__ = ["CONN_TYPE", "__version__", "get_provider_info"]
