"""Loading a worker's own skills: `agentmesh worker --skills-module PATH_OR_MODULE`.

Each source is a `.py` file (imported under its file name, with its folder
first on `sys.path`, as `python FILE` would) or a dotted module name
(imported as usual). Every skill decorated while it is imported, and every
decorated function it holds, is a skill of the worker. A source that cannot
be imported, defines no skill, defines a name twice, or uses a built-in
skill's name is refused with `SkillsModuleError` (a ValueError, which the
CLI shows as one line and exits non-zero) naming the source and the problem.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Collection, Iterable
from pathlib import Path
from types import ModuleType

from agentmesh.agents import skilldef
from agentmesh.agents.skilldef import SkillDefinition, SkillDefinitionError, definition_of


class SkillsModuleError(ValueError):
    """A skills module the worker cannot use: the message names it and the problem."""


def load_skills_modules(
    sources: Iterable[str], reserved: Collection[str] = ()
) -> dict[str, SkillDefinition]:
    """The skills the sources define, by name; `reserved` are names taken (the built-ins)."""
    found: dict[str, tuple[SkillDefinition, str]] = {}
    for source in sources:
        definitions = _load(source)
        if not definitions:
            raise SkillsModuleError(
                f"skills module {source} defines no skill: decorate its async functions with "
                "@skill (from agentmesh.agents import skill)"
            )
        for definition in definitions:
            name = definition.name
            if name in reserved:
                raise SkillsModuleError(
                    f"skills module {source}: skill {name!r} ({definition.where}) has the name "
                    "of a built-in skill; give it another name"
                )
            seen = found.get(name)
            if seen is not None and seen[0] is not definition:
                raise SkillsModuleError(
                    f"skills module {source}: skill {name!r} is defined twice, by "
                    f"{seen[0].where} ({seen[1]}) and by {definition.where}"
                )
            found[name] = (definition, source)
    return {name: definition for name, (definition, _) in found.items()}


def _load(source: str) -> list[SkillDefinition]:
    """Import the source; the distinct skills it defines, in order."""
    collected: list[SkillDefinition] = []
    before = skilldef.collecting
    skilldef.collecting = collected
    try:
        module = _import(source)
    except SkillsModuleError:
        raise
    except SkillDefinitionError as error:
        raise SkillsModuleError(f"skills module {source}: {error}") from None
    except Exception as error:
        raise SkillsModuleError(
            f"cannot import skills module {source}: {type(error).__name__}: {error}"
            + _where(error, source)
        ) from None
    finally:
        skilldef.collecting = before
    held = (definition_of(value) for value in vars(module).values())
    unique: dict[int, SkillDefinition] = {}
    for definition in [*collected, *held]:
        if definition is not None:
            unique.setdefault(id(definition), definition)
    return list(unique.values())


def _import(source: str) -> ModuleType:
    if not (source.endswith(".py") or "/" in source or "\\" in source):
        return importlib.import_module(source)
    path = Path(source).resolve()
    if not path.is_file():
        raise SkillsModuleError(f"skills module {source}: no such file")
    name = path.stem if path.stem.isidentifier() else "skills"
    if name in sys.modules:
        name = f"agentmesh_skills_{len(sys.modules)}_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SkillsModuleError(f"skills module {source}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    # As `python FILE` does: the file's folder first, so that it imports its neighbours.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _where(error: Exception, source: str) -> str:
    """ " (line N)": where in the source file the error was raised, when it was."""
    if isinstance(error, SyntaxError):
        return ""  # its message names the file and line already
    path = str(Path(source).resolve()) if source.endswith(".py") else ""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno})" if frames else ""
