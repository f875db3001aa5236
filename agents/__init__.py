"""Planners, the MPC agent, the model-as-environment wrapper, the RL loop and the CLI."""
