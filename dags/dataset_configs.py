"""
### dataset_configs: why a dataset config has no DAGs

Every other file in this folder builds its DAG once per dataset config in `DRIFTLOOP_CONFIG_DIR` (or the
configs named in `DRIFTLOOP_DATASETS`), with DAG ids `<dataset>__<dag name>`. A config that is refused gets no
DAGs while the other datasets' DAGs load as usual, and this file reports it: its import error in the Airflow
UI names each refused config file and the key at fault. A config is refused when it does not validate, when
its `name` differs from its file name, or when it registers the same model or keeps state in the same folder
as another config (both are refused then). While every config is usable this file builds no DAG.
"""

from __future__ import annotations

from driftloop_airflow.factory import report_refused_configs

report_refused_configs(__doc__)
