"""How the operator sets kopf up: event handlers only, so no object's essence is ever copied or compared."""

from __future__ import annotations

import kopf

from headwater.controller import handlers


def test_the_operator_registers_no_change_handlers_and_no_daemons_so_an_empty_essence_loses_nothing() -> None:
    registry = kopf.get_default_registry()
    watched = {(h.selector.group, h.selector.any_name) for h in registry._watching.get_all_handlers()}
    assert watched == {("headwater.dev", "pipelineruns"), ("headwater.dev", "pipelines"), ("batch", "jobs")}
    # NoEssence is only right while nothing compares essences: a change handler or a daemon needs kopf's own.
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []


def test_an_objects_essence_is_empty_and_never_stored() -> None:
    storage = handlers.NoEssence()
    body = kopf.Body({"apiVersion": "headwater.dev/v1alpha1", "kind": "PipelineRun",
                      "metadata": {"name": "r", "labels": {"a": "b"}, "annotations": {"x": "y"}},
                      "spec": {"pipelineRef": {"name": "p"}}, "status": {"phase": "Running"}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence({"spec": {}}))
    assert not patch  # nothing written to the object
