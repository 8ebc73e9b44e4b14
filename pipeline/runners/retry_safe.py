"""TFX's component launcher for Airflow tasks, made safe to run a step again in the same DAG run
(an Airflow retry, `airflow tasks clear`).

TFX 1.16's launcher names a step's execution context `<pipeline>.<run id>.<step>`. Run again in
the same DAG run, `Metadata.register_execution` (tfx/orchestration/metadata.py) first tries to
create that context again (`AlreadyExistsError: Given node already exists`), then falls back to
the earlier try's execution and inserts its input events a second time (`UNIQUE constraint
failed: Event.artifact_id, Event.execution_id, Event.type`): every retry failed in 0.3 s. TFX's
fallback has three more faults for a retry: it names every output `<key>:<run id>` (MLMD names
are unique per type, so the new try's outputs collide), `publish_execution` accepts exactly one
execution per context, and downstream steps read the producer's *first* execution in the run,
i.e. the killed try's unpublished outputs.

`RetrySafeMetadata` changes exactly those four places:
- a retry marks the earlier unfinished tries of the step FAILED (their output folders are left
  as they are, for inspection) and registers a new execution in the existing context, so it
  writes new output folders (`<root>/<step>/<output>/<new execution id>/`);
- a new output whose name an earlier try took gets the execution id appended;
- the launch publishes the execution it registered, and refuses to if a newer try has marked
  it FAILED (a zombie try that kept running);
- a downstream step reads the producer's newest finished execution in the run (and stops with
  a clear error if no try of it finished).
A first try takes TFX's own path unchanged. This relies on TFX 1.16 internals
(`_prepare_execution`, `_artifact_and_event_pairs`, `_ArtifactState`, the `state` property);
tests/pipeline/runners/test_airflow_scheduler.py kills a Trainer mid-training under Airflow's
real scheduler and checks that the retry's model is the one pushed.
"""

import absl
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2
from tfx.orchestration import metadata
from tfx.orchestration.launcher.in_process_component_launcher import (
    InProcessComponentLauncher,
)

FAILED = "failed"  # a value of TFX's legacy `state` execution property, beside new/complete/cached


def _state(execution) -> str:
    return execution.properties["state"].string_value


def _finished(execution) -> bool:
    return _state(execution) in metadata.FINAL_EXECUTION_STATES  # complete, cached


class RetrySafeMetadata(metadata.Metadata):
    """TFX's Metadata, with one execution per try of a step in a run (see the module doc).

    One instance serves one launch (its driver and publisher share it), so it remembers the
    execution its driver registered and publishes that one."""

    def __init__(self, connection_config) -> None:
        super().__init__(connection_config)
        self._registered = None

    def _close_unfinished(self, executions) -> None:
        """Marks the earlier tries that did not finish as failed. (Their outputs were never
        registered: TFX's legacy launcher records a step's outputs only when it publishes.)"""
        for e in executions:
            if _finished(e) or _state(e) == FAILED:
                continue
            absl.logging.warning(
                "execution %d of %s was left %r by an earlier try: marked failed",
                e.id,
                e.properties["component_id"].string_value,
                _state(e),
            )
            e.properties["state"].string_value = FAILED
            e.last_known_state = mlmd_pb2.Execution.FAILED
            self.store.put_executions([e])

    def register_execution(
        self, pipeline_info, component_info, contexts, exec_properties=None, input_artifacts=None
    ):
        context = self.get_component_run_context(component_info)
        if context is None:  # the step's first try in this run: TFX's own path
            execution = super().register_execution(
                pipeline_info=pipeline_info,
                component_info=component_info,
                contexts=contexts,
                exec_properties=exec_properties,
                input_artifacts=input_artifacts,
            )
            self._registered = execution.id
            return execution
        self._close_unfinished(self.store.get_executions_by_context(context.id))
        execution = self._prepare_execution(
            metadata.EXECUTION_STATE_NEW, exec_properties or {}, pipeline_info, component_info
        )
        pairs = self._artifact_and_event_pairs(
            artifact_dict=input_artifacts or {}, event_type=mlmd_pb2.Event.INPUT
        )
        execution.id, artifact_ids, _ = self.store.put_execution(
            execution=execution, artifact_and_events=pairs, contexts=[*contexts, context]
        )
        contexts.append(context)
        for (artifact, _event), artifact_id in zip(pairs, artifact_ids, strict=False):
            artifact.id = artifact_id
        self._registered = execution.id
        absl.logging.info(
            "a new try of %s: execution %d in %s",
            component_info.component_id,
            execution.id,
            context.name,
        )
        return execution

    def update_execution(self, execution, component_info, output_artifacts=None, **kwargs):
        for artifacts in (output_artifacts or {}).values():
            for a in artifacts:
                if (
                    not a.id
                    and a.name
                    and self.store.get_artifact_by_type_and_name(a.type_name, a.name)
                ):
                    a.name = f"{a.name}:{execution.id}"  # an earlier try's output has the name
        super().update_execution(
            execution=execution,
            component_info=component_info,
            output_artifacts=output_artifacts,
            **kwargs,
        )

    def _step_executions(self, component_info) -> list:
        context = self.get_component_run_context(component_info)
        if context is None:
            return []
        return sorted(self.store.get_executions_by_context(context.id), key=lambda e: e.id)

    def publish_execution(self, component_info, output_artifacts=None, exec_properties=None):
        executions = self._step_executions(component_info)
        if len(executions) <= 1 or self._registered is None:
            return super().publish_execution(component_info, output_artifacts, exec_properties)
        [execution] = [e for e in executions if e.id == self._registered]
        if _state(execution) == FAILED:
            raise RuntimeError(
                f"execution {execution.id} of {component_info.component_id} was superseded by "
                "a newer try of the step: not published"
            )
        if _finished(execution):
            return None
        contexts = [
            self.get_component_run_context(component_info),
            self.get_pipeline_run_context(component_info.pipeline_info),
            self.get_pipeline_context(component_info.pipeline_info),
        ]
        self.update_execution(
            execution=execution,
            component_info=component_info,
            output_artifacts=output_artifacts,
            exec_properties=exec_properties,
            execution_state=metadata.EXECUTION_STATE_COMPLETE,
            artifact_state=metadata._ArtifactState.PUBLISHED,  # noqa: SLF001 - TFX's own value
            contexts=[c for c in contexts if c is not None],
        )
        return None

    def search_artifacts(self, artifact_name, pipeline_info, producer_component_id):
        context = self.get_pipeline_run_context(pipeline_info)
        if context is None:
            raise RuntimeError(f"no run context for {pipeline_info}")
        produced = [
            e
            for e in self.store.get_executions_by_context(context.id)
            if e.properties["component_id"].string_value == producer_component_id
        ]
        if len(produced) <= 1:
            return super().search_artifacts(artifact_name, pipeline_info, producer_component_id)
        finished = [e for e in produced if _finished(e)]
        if not finished:
            raise RuntimeError(
                f"no try of {producer_component_id} finished in this run: run it again first"
            )
        chosen = max(finished, key=lambda e: e.id)
        return self.get_outputs_of_execution(chosen.id).get(artifact_name, [])


class RetrySafeLauncher(InProcessComponentLauncher):
    """TFX's in-process launcher whose driver and publisher use RetrySafeMetadata."""

    def __init__(self, *, metadata_connection, **kwargs):
        super().__init__(
            metadata_connection=RetrySafeMetadata(metadata_connection.connection_config),
            **kwargs,
        )
