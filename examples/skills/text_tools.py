"""Two skills written in Python: `agentmesh worker --skills-module examples/skills/text_tools.py`.

`reverse_text` is plain code; `headline` asks the worker's model (start the worker
with `--backend openai`, `anthropic` or `local` to offer a working `headline`).
See docs/skills.md.
"""

from __future__ import annotations

from agentmesh.agents import SkillContext, skill

TEXT = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
}


@skill(
    name="reverse_text",
    description="Reverse a text, character by character.",
    input_schema=TEXT,
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    max_input_bytes=16_384,
)
async def reverse_text(input: dict, context: SkillContext) -> dict:
    context.logger.info("reversing", extra={"chars": len(input["text"])})
    return {"text": input["text"][::-1]}


@skill(
    name="headline",
    description="Write a short headline for a text.",
    input_schema=TEXT,
    output_schema={
        "type": "object",
        "properties": {"headline": {"type": "string", "minLength": 1, "maxLength": 80}},
        "required": ["headline"],
        "additionalProperties": False,
    },
    instructions="Write one headline of at most ten words for the text, in its language.",
    tier="small",
)
async def headline(input: dict, context: SkillContext) -> dict:
    answer = await context.model.generate({"text": input["text"]})
    return {"headline": answer["headline"].strip()}
