"""Names of Headwater's API objects, labels and annotations, in one place."""

from typing import Final

GROUP: Final = "headwater.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

PIPELINE_KIND: Final = "Pipeline"
PIPELINE_PLURAL: Final = "pipelines"
PIPELINERUN_KIND: Final = "PipelineRun"
PIPELINERUN_PLURAL: Final = "pipelineruns"
BACKFILL_KIND: Final = "Backfill"
BACKFILL_PLURAL: Final = "backfills"

LABEL_PIPELINE: Final = f"{GROUP}/pipeline"
LABEL_RUN: Final = f"{GROUP}/run"
LABEL_STEP: Final = f"{GROUP}/step"
LABEL_TRIGGER: Final = f"{GROUP}/trigger"
LABEL_BACKFILL: Final = f"{GROUP}/backfill"
LABEL_SETTLED: Final = f"{GROUP}/settled"
"""On a finished PipelineRun that owes nothing more (``Settled``, and recorded or let go): the operator's
watch selects runs without it, so thousands of finished runs are not kept in its memory."""
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_JOB_NAME: Final = "batch.kubernetes.io/job-name"
LABEL_JOB_CONTROLLER_UID: Final = "batch.kubernetes.io/controller-uid"
"""Labels the Job controller puts on a Job's pods: the Job's name and UID."""
MANAGER: Final = "headwater"

FIELD_MANAGER: Final = "headwater-operator"

PIPELINE_SHORT_NAME: Final = "pl"
PIPELINERUN_SHORT_NAME: Final = "plr"
BACKFILL_SHORT_NAME: Final = "bf"
CATEGORY: Final = "headwater"

CONDITION_READY: Final = "Ready"
"""A Pipeline's spec is valid and runnable (the scheduler and `kubectl get pipelines` read it)."""

DEFAULT_IMAGE: Final = "ghcr.io/headwater-dev/headwater:0.1.0"
"""The Headwater image; steps of type sql run ``headwater step sql`` in it unless they set an image."""
