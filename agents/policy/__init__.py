"""A latent actor-critic trained in the imagination of a world model (Dreamer-style).

Two uses: ``ActorPolicy`` acts in the real environment from pixels through the model's filter,
and the critic (``ActorCritic.value``) is a terminal value for MPC
(``MPCAgent(..., value_fn=ac.value)``, ``rollout_objective(..., value_fn=...)``).

Goal-conditioned actors (``GoalConditioned``, ``GoalDistanceReward``, ``goal_start_states``) are
trained the same way on a model that carries a goal vector in its state.

Train with ``train_actor_critic(model, reward_fn, data, ActorCriticConfig(...).for_action_space(space),
run_dir, device, progress)``; ``ActorCritic.load(run_dir / "actor_critic.pt")`` reads it back.
"""

from .acting import ActorPolicy
from .actor_critic import ActorCritic, ActorCriticFileError
from .config import ActorCriticConfig
from .goal import GoalBelief, GoalConditioned, GoalDistanceReward, GoalState, goal_start_states
from .networks import Actor, Critic, OneHotCategorical, SquashedNormal
from .returns import ReturnScale, lambda_returns
from .starts import StartStates, start_states
from .trainer import POLICY_FILE, frozen, imagine, train_actor_critic

__all__ = ["Actor", "ActorCritic", "ActorCriticConfig", "ActorCriticFileError", "ActorPolicy", "Critic",
           "GoalBelief", "GoalConditioned", "GoalDistanceReward", "GoalState", "OneHotCategorical", "POLICY_FILE",
           "ReturnScale", "SquashedNormal", "StartStates", "frozen", "goal_start_states", "imagine",
           "lambda_returns", "start_states", "train_actor_critic"]
