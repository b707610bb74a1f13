from pathlib import Path

import pytest

from agentmesh.errors import InvalidArgument, NotFound
from agentmesh.scheduler.plans import validate_plan
from agentmesh.scheduler.workflows import WorkflowLibrary, chunk_text

ROOT = Path(__file__).resolve().parents[2]
ALL_CAPS = frozenset(
    {
        "extract_entities",
        "detect_language",
        "sentiment",
        "summarize",
        "classify",
        "draft_reply",
        "translate",
    }
)


@pytest.fixture(scope="module")
def library() -> WorkflowLibrary:
    return WorkflowLibrary.load()


def test_builtin_workflows_are_known(library: WorkflowLibrary) -> None:
    assert {"support_ticket", "long_document"} <= set(library.names())


def test_support_ticket_plan(library: WorkflowLibrary) -> None:
    plan = library.decompose("support_ticket", {"text": "My order ORD-1234 is late"}, 64)
    validate_plan(plan, ALL_CAPS, 64)
    ids = [s.id for s in plan.steps]
    assert ids == ["entities", "language", "sentiment", "summary", "triage", "reply", "translate"]
    translate = plan.step("translate")
    assert translate.optional and translate.when is not None
    assert plan.answer["reply"].refs == ("steps.translate.text", "steps.reply.reply")


def test_long_document_fans_out_and_reduces(library: WorkflowLibrary) -> None:
    text = (ROOT / "examples" / "long_document.txt").read_text()
    plan = library.decompose("long_document", {"text": text}, 64)
    validate_plan(plan, ALL_CAPS, 64)
    chunks = [s for s in plan.steps if s.id.startswith("chunk_")]
    assert len(chunks) >= 3
    reduce = plan.step("reduce")
    assert set(reduce.depends_on) == {s.id for s in chunks}
    assert reduce.inputs["texts"].collect
    assert len(reduce.inputs["texts"].refs) == len(chunks)
    # Every chunk carries a piece of the text, and together they cover it.
    pieces = [s.inputs["text"].value for s in chunks]
    assert all(p.strip() for p in pieces)
    assert sum(len(p) for p in pieces) >= 0.95 * len(text.strip())


def test_fan_out_never_exceeds_the_step_limit(library: WorkflowLibrary) -> None:
    text = "\n\n".join(f"Paragraph {i} has some words in it." * 20 for i in range(200))
    plan = library.decompose("long_document", {"text": text}, 10)
    assert len(plan.steps) <= 10


def test_unknown_workflow_names_the_known_ones(library: WorkflowLibrary) -> None:
    with pytest.raises(NotFound, match="support_ticket"):
        library.decompose("nope", {"text": "x"}, 64)


def test_missing_required_input(library: WorkflowLibrary) -> None:
    with pytest.raises(InvalidArgument) as error:
        library.decompose("support_ticket", {"body": "x"}, 64)
    assert error.value.violations[0].field == "input.text"


def test_chunk_text_packs_paragraphs() -> None:
    text = "\n\n".join(["a" * 40] * 10)
    chunks = chunk_text(text, 100, 64)
    assert all(len(c) <= 100 for c in chunks)
    assert len(chunks) == 5
    assert len(chunk_text(text, 100, 2)) == 2
