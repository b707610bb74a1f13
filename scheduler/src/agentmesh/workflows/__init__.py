"""Built-in workflow templates (TOML), loaded by agentmesh.scheduler.workflows."""
