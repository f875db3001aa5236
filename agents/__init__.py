"""Planners, the MPC agent, the model-as-environment wrapper, the RL loop and the CLI."""

if __name__ == "agents":  # imported as a top-level package from a checkout: one name, one module
    raise ImportError("import worldmodels.agents, not agents: the package installs as worldmodels.agents")
