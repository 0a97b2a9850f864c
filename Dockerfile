# Airflow 3.3 with airflow-provider-lucca (and its s3 + parquet extras) installed, plus the Lucca
# sandbox (its own distribution, lucca-sandbox, a development tool) for the compose stack.
#
# Built by docker-compose.yaml for every Airflow service and for the Lucca sandbox. The DAGs are not
# copied: docker-compose mounts ./dags at /opt/airflow/dags, so editing a DAG needs no rebuild.
# Rebuild (`docker compose up --build`) after changing the provider package itself.
FROM apache/airflow:3.3.2-python3.11

# The official image's way to add packages: pip as the `airflow` user, pinning the Airflow version of
# the image so pip never up- or downgrades it, with Airflow's constraints for the other packages
# (README "Installing into your Airflow": the same command outside Docker).
ARG AIRFLOW_CONSTRAINTS_URL=https://raw.githubusercontent.com/apache/airflow/constraints-3.3.2/constraints-3.11.txt

USER airflow
# LICENSE: the build puts it in the wheel's metadata (pyproject license-files).
COPY --chown=airflow:0 pyproject.toml README.md LICENSE /opt/airflow/src/airflow-provider-lucca/
COPY --chown=airflow:0 airflow_provider_lucca /opt/airflow/src/airflow-provider-lucca/airflow_provider_lucca
COPY --chown=airflow:0 sandbox /opt/airflow/src/airflow-provider-lucca/sandbox
WORKDIR /opt/airflow/src/airflow-provider-lucca
RUN pip install --no-cache-dir --constraint "${AIRFLOW_CONSTRAINTS_URL}" \
        "apache-airflow==${AIRFLOW_VERSION}" ".[s3,parquet,redis]" ./sandbox
WORKDIR /opt/airflow
