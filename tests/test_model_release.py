"""Closing a model: one freed by reference counting needs no full garbage collection
(``models.drop_model``; ``gc.collect`` walks every object of a process holding torch, about
a quarter of a second of CPU each time a stage step closes its model)."""

import gc
import weakref

import pytest

from semcomp.captioners.blip import BlipCaptioner, BlipParams
from semcomp.metrics.fid import Fid, FidParams
from semcomp.reconstructors.diffusers import DiffusersParams, DiffusersReconstructor


@pytest.mark.parametrize("plugin", ["blip", "diffusers", "fid"])
def test_closing_a_model_frees_it_without_a_full_collection(plugin, request, monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    if plugin == "blip":
        params = BlipParams(model=str(request.getfixturevalue("tiny_blip")))
        owner, attribute = BlipCaptioner(params, device="cpu"), "model"
    elif plugin == "diffusers":
        params = DiffusersParams(
            model=str(request.getfixturevalue("tiny_sd")), steps=2, width=64, height=64
        )
        owner, attribute = DiffusersReconstructor(params, device="cpu"), "pipeline"
    else:
        owner, attribute = Fid(FidParams(weights="tiny"), device="cpu", batch_size=4), "model"
    model = weakref.ref(getattr(owner, attribute))
    owner.close()
    assert model() is None and getattr(owner, attribute) is None and collections == []


def test_a_model_weak_references_cannot_follow_is_still_collected(monkeypatch):
    from types import SimpleNamespace

    from semcomp import models

    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    owner = SimpleNamespace(model=("weights", "of", "a", "model"))  # a tuple: no weak refs
    models.drop_model(owner)
    assert owner.model is None and len(collections) == 1
