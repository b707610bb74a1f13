"""Where a request's plan comes from: a workflow template, the client, or a planner worker.

Every plan is checked (`plans.validate_plan`) against the capabilities a
plan may name before anything runs: the skill catalogue and whatever the
registered workers offer; a planner's plan only against the live mesh.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler import planner
from agentmesh.scheduler.calls import SubtaskCall
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.plans import Plan, plan_to_dict, validate_plan
from agentmesh.scheduler.registry import Registry
from agentmesh.scheduler.tiers import NUANCED
from agentmesh.scheduler.workflows import WorkflowLibrary
from agentmesh.server.skills import SKILLS


@dataclass(frozen=True)
class Source:
    """Where a request's plan comes from: exactly one of these is set."""

    workflow: str = ""
    plan: Plan | None = None
    goal: str = ""

    def canonical(self) -> dict[str, Any]:
        """The source as plain data, for the request's fingerprint."""
        plan = plan_to_dict(self.plan) if self.plan is not None else None
        return {"workflow": self.workflow, "plan": plan, "goal": self.goal}


class PlanMaker:
    """Makes and checks a request's plan from its `Source`."""

    def __init__(
        self,
        workflows: WorkflowLibrary,
        registry: Registry,
        dispatcher: Dispatcher,
        max_steps: int,
    ) -> None:
        self.workflows = workflows
        self.registry = registry
        self.dispatcher = dispatcher
        self.max_steps = max_steps

    def capabilities(self) -> frozenset[str]:
        """Capabilities a plan may name: the skill catalogue and whatever workers offer."""
        return frozenset(SKILLS) | self.registry.capabilities()

    async def make(self, source: Source, data: Mapping[str, Any], deadline: float) -> Plan:
        """The checked plan for a request: its workflow's, the one it supplied, or a planner's."""
        if source.plan is not None:
            plan = source.plan
        elif source.workflow:
            plan = self.workflows.decompose(source.workflow, data, self.max_steps)
        elif source.goal:
            return await self._plan_goal(source.goal, data, deadline)
        else:
            raise InvalidArgument(
                "a request names a workflow, supplies a plan, or states a goal",
                [FieldViolation("workflow", "set workflow, plan or goal")],
                reason="NO_PLAN",
            )
        validate_plan(plan, self.capabilities(), self.max_steps)
        return plan

    async def _plan_goal(self, goal: str, data: Mapping[str, Any], deadline: float) -> Plan:
        """A plan made by a worker offering the `plan` skill, checked against the live mesh."""
        capabilities = self.registry.capabilities() - {planner.PLAN}
        outcome = await self.dispatcher.run(
            SubtaskCall(
                request_id=uuid.uuid4().hex,
                subtask_id="plan",
                capability=planner.PLAN,
                input=planner.planner_input(goal, data, self.registry.skills()),
                difficulty=NUANCED,
                deadline=deadline,
            )
        )
        plan = planner.plan_from_output(outcome.result.output)
        try:
            validate_plan(plan, capabilities, self.max_steps)
        except InvalidArgument as error:
            raise InvalidArgument(
                f"the planner ({outcome.worker_id}) made a plan that cannot run: {error.message}",
                error.violations,
                reason="PLANNER_INVALID_PLAN",
            ) from error
        return plan
