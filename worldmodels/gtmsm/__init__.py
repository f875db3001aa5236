"""GTM-SM: generative temporal model with spatial memory (thesis chapter 7).

``GTMSM(GTMSMConfig(...))`` implements the package's ``WorldModel`` protocol; the DND it uses
is :mod:`worldmodels.dnd`.
"""

from worldmodels.gtmsm.config import GTMSMConfig
from worldmodels.gtmsm.landmark import LandmarkInference
from worldmodels.gtmsm.model import GTMSM, GTMSMBelief, StatePath, mixture_kl
from worldmodels.gtmsm.state import GTMSMState
from worldmodels.gtmsm.transition import StateTransition

__all__ = ["GTMSM", "GTMSMConfig", "GTMSMBelief", "GTMSMState", "StatePath", "StateTransition",
           "LandmarkInference", "mixture_kl"]
