"""Where a Kubeflow step reads and writes an artifact, and the URI the artifact has elsewhere.

KFP's launcher downloads a step's input artifacts to, and uploads its outputs from, local mounts:
`minio://bucket/path` is `/minio/bucket/path` in the pod, `s3://` is `/s3/` (kubeflow/pipelines
`backend/src/v2/component/launcher_v2.go`, as the KFP SDK's `Artifact.path`). TensorFlow cannot
open `minio://`, so kubeflow/entrypoint.py hands the executors the local paths; whatever a step
records about an artifact for other steps (the pusher's model card, the blessing's baseline) must
name the URI, not this pod's path. `gs://` is not mapped: TensorFlow writes it directly. Outside a
Kubeflow pod nothing is under the mounts and both functions return their argument.
`MIMO_KFP_LOCAL_MOUNT` moves the mounts under another folder (the launcher-contract test's pods).
"""

import os

LOCAL_MOUNTS = {"minio://": "minio/", "s3://": "s3/"}


def local_mount() -> str:
    return os.environ.get("MIMO_KFP_LOCAL_MOUNT") or "/"


def to_local(uri: str) -> str:
    for remote, folder in LOCAL_MOUNTS.items():
        if uri.startswith(remote):
            return os.path.join(local_mount(), folder, uri[len(remote) :])
    return uri


def to_remote(path: str) -> str:
    for remote, folder in LOCAL_MOUNTS.items():
        prefix = os.path.join(local_mount(), folder)
        if path.startswith(prefix):
            return remote + path[len(prefix) :]
    return path
