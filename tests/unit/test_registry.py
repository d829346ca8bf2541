from __future__ import annotations

import pytest

from viewfinder.errors import UserError
from viewfinder.registry import Registry
from viewfinder.tasks import TASKS, get_task_class


@pytest.fixture
def losses() -> Registry:
    registry: Registry = Registry("loss")

    @registry.register("cross_entropy")
    def cross_entropy() -> str:
        return "ce"

    registry.register("focal")(lambda: "focal")
    return registry


def test_register_returns_the_item_and_get_finds_it(losses: Registry) -> None:
    def mse() -> str:
        return "mse"

    assert losses.register("mse")(mse) is mse
    assert losses.get("mse") is mse
    assert losses.get("cross_entropy")() == "ce"


def test_names_contains_and_iteration_are_sorted(losses: Registry) -> None:
    assert losses.names() == ["cross_entropy", "focal"]
    assert list(losses) == ["cross_entropy", "focal"]
    assert "focal" in losses
    assert "dice" not in losses
    assert 3 not in losses


def test_duplicate_registration_is_refused(losses: Registry) -> None:
    original = losses.get("focal")
    with pytest.raises(ValueError, match="'focal' is registered twice"):
        losses.register("focal")(lambda: "other")
    assert losses.get("focal") is original


def test_unknown_name_suggests_and_lists_choices(losses: Registry) -> None:
    with pytest.raises(UserError) as info:
        losses.get("focall")
    message = str(info.value)
    assert message.startswith("unknown loss 'focall'")
    assert "did you mean 'focal'" in message
    assert message.endswith("choose from: cross_entropy, focal")
    assert "\n" not in message


def test_unknown_name_without_a_near_match(losses: Registry) -> None:
    with pytest.raises(UserError, match="choose from: cross_entropy, focal") as info:
        losses.get("zzz")
    assert "did you mean" not in str(info.value)


def test_empty_registry_get() -> None:
    with pytest.raises(UserError, match="unknown head 'attn'"):
        Registry("head").get("attn")


def test_classify_task_is_registered() -> None:
    from viewfinder.tasks.base import Task
    from viewfinder.tasks.classify import ClassifyTask

    assert "classify" in TASKS
    cls = get_task_class("classify")
    assert cls is ClassifyTask
    assert issubclass(cls, Task)
    assert cls.name == "classify"


def test_unknown_task() -> None:
    with pytest.raises(UserError) as info:
        get_task_class("clasify")
    message = str(info.value)
    assert "unknown task 'clasify'" in message
    assert "did you mean 'classify'" in message
    assert "choose from: caption, classify, iqa, iqa+caption" in message
