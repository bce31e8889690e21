"""A result's buttons fit Discord's 5 action rows of 5 buttons for every model, image count and
button kind, and none is dropped: table-driven over every built-in and API model × 1-4 images ×
with and without Edit, each layout checked by the strict fake Discord's own rules
(`tests.discord.limits.check_components`, docs/components/reference.mdx "Action Row")."""

from __future__ import annotations

import pytest

from bot.actions import Action
from bot.derived import IMAGE_ACTIONS, JOB_ACTIONS, offered_actions
from bot.ui.buttons import result_view
from generation.hosted.catalogue import HOSTED_MODELS
from generation.models import Catalogue
from generation.request import MAX_COUNT, build_request
from tests.discord.limits import FormErrors, check_components

CATALOGUE = Catalogue.builtin().with_hosted(HOSTED_MODELS)
MODELS = [*CATALOGUE, *CATALOGUE.hosted]
ALWAYS = 2  # ℹ️ and 🗑️


@pytest.mark.parametrize("count", range(1, MAX_COUNT + 1))
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("edit", [False, True], ids=["no-edit", "edit"])
async def test_every_offered_button_fits_five_rows_of_five(
    model: str, count: int, edit: bool
) -> None:
    request = build_request(CATALOGUE, prompt="a lighthouse", model=model, count=count)
    actions = (*offered_actions(CATALOGUE, request), *((Action.EDIT,) if edit else ()))
    components = result_view(10**18, count, actions).to_components()
    errors = FormErrors()
    check_components(components, 0, errors)
    assert errors.tree == {}
    buttons = [button for row in components for button in row["components"]]
    per_image = sum(action in actions for action in (*IMAGE_ACTIONS, Action.EDIT))
    per_job = sum(action in actions for action in JOB_ACTIONS) + ALWAYS
    assert len(buttons) == per_image * count + per_job  # none left out to make it fit
    edits = [b for b in buttons if b["custom_id"].startswith("atelier:edit:")]
    assert len(edits) == (count if edit else 0)


async def test_the_fullest_layout_uses_all_five_rows() -> None:
    """Playground offers U, V subtle, V strong; with Edit and four images: 4 rows of 4 image
    buttons and the job row."""
    request = build_request(CATALOGUE, prompt="a lighthouse", model="playground-v2.5", count=4)
    actions = (*offered_actions(CATALOGUE, request), Action.EDIT)
    components = result_view(42, 4, actions).to_components()
    assert [len(row["components"]) for row in components] == [4, 4, 4, 4, 4]
    assert [b["label"] for b in components[3]["components"]] == [f"✏️ Edit {n}" for n in range(1, 5)]


async def test_every_button_kind_at_once_still_fits() -> None:
    """The bound by construction: every per-image kind (U, V subtle, V strong, Edit) on four
    images and every per-job kind (🔁 🎲 ✅ ℹ️ 🗑️) — more than any one model offers — is 5 rows
    of at most 5, none dropped."""
    actions = (*IMAGE_ACTIONS, Action.EDIT, *JOB_ACTIONS, Action.FINAL)
    components = result_view(42, MAX_COUNT, actions).to_components()
    errors = FormErrors()
    check_components(components, 0, errors)
    assert errors.tree == {}
    assert [len(row["components"]) for row in components] == [4, 4, 4, 4, 5]
