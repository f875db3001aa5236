"""Configuration of the GTM-SM (thesis chapter 7)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GTMSMConfig:
    """Hyper-parameters of :class:`worldmodels.gtmsm.GTMSM`.

    Defaults follow the image-navigation experiment (thesis 7.4.1, 7.7.1): 8x8 RGB views,
    5 one-hot actions, 2-d state, 16-d frame code, K = 5 neighbours, delta = 1e-4, r = 1e-3,
    tau = 256 memorised steps per training sequence (the rest of the sequence is predicted).
    """

    obs_shape: tuple[int, int, int] = (3, 8, 8)
    action_dim: int = 5
    state_dim: int = 2
    z_dim: int = 16

    # phases: frames [0, tau) are memorised, [tau, tau + predict_steps) predicted in `loss`
    tau: int = 256
    #: predicted frames per training sequence (None: all frames after tau); 32 in the thesis.
    predict_steps: int | None = None
    #: DND slots per sequence (None: tau); longer contexts in `observe` evict FIFO.
    capacity: int | None = None

    # VAE
    encoder: str = "mlp"  # mlp | conv
    hidden: tuple[int, ...] = (256, 256)
    channels: int = 32
    likelihood: str = "gaussian"  # gaussian (fixed std obs_std) | bernoulli
    obs_std: float = 0.1

    # state-space model: s_t = s_{t-1} + R(s) d_t * gate + eps, eps ~ N(0, r^2 I)
    transition_std: float = 1e-3
    gate: bool = True  # wall gate sigma_d of eq. 7.3
    gate_hidden: tuple[int, ...] = (32, 32)  # (10, 5) in the public re-implementation
    #: learning-rate multiplier of the gate MLP (weights stored scaled, see
    #: ``transition.ScaledLinear``); the public re-implementation trains sigma_d at 10x lr.
    gate_lr_scale: float = 10.0
    #: what the gate MLP sees of the projected state: action_basis | whitened | raw
    #: (see ``StateTransition.gate_features``)
    gate_input: str = "action_basis"
    rotation: bool = False  # eq. 7.4: needs state_dim == 3 (x, y, angle)
    momentum: bool = False  # 7.4.2.2: d_t = c_s * tanh(sigmoid(c_f) * d_{t-1} + M a_t)
    #: at inference time (frames known) a move whose next frame is identical to the current
    #: one is treated as blocked (zero displacement); the gate learns to predict this (BCE on
    #: the frame-change signal) and non-moving actions learn a zero displacement, for
    #: prediction without frames. Uses only frames and actions.
    blocked_from_frames: bool = True
    #: weight of those two self-supervised terms (``GTMSM.transition_aux_loss``).
    gate_loss_weight: float = 1.0
    #: weight of the isotropy gauge term ``S log(tr C / S) - log det C`` (>= 0, 0 iff isotropic)
    #: on the covariance C of the memorised positions of each sequence. The ELBO barely
    #: constrains linear maps of the state space, and training tends to a nearly rank-1 M whose
    #: lattice cells overlap; this term picks a well-conditioned gauge. 0 disables it.
    isotropy_weight: float = 0.0
    #: max |x_{t+1} - x_t| under which two frames count as identical.
    same_frame_tol: float = 1e-4

    # memory and prior
    memory: bool = True  # False: standard-normal prior (the no-memory baseline)
    k: int = 5
    delta: float = 1e-4
    kl_estimator: str = "mc"  # mc (log-sum-exp Monte Carlo) | bound (sum_k w_k KL(q||p_k))
    kl_samples: int = 8
    dnd_backend: str = "torch"  # torch | auto | kdtree | faiss (selection only)

    # landmark inference (thesis 7.10): reverse DND read corrects the inferred state
    landmark: bool = False
    landmark_k: int = 5
    landmark_hidden: int = 32

    def __post_init__(self) -> None:
        self.obs_shape = tuple(int(s) for s in self.obs_shape)
        self.hidden = tuple(int(h) for h in self.hidden)
        self.gate_hidden = tuple(int(h) for h in self.gate_hidden)
        if self.encoder not in ("mlp", "conv"):
            raise ValueError(f"encoder: expected 'mlp' or 'conv', got {self.encoder!r}")
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood: expected 'gaussian' or 'bernoulli', got {self.likelihood!r}")
        if self.gate_input not in ("action_basis", "whitened", "raw"):
            raise ValueError(f"gate_input: expected 'action_basis', 'whitened' or 'raw', got {self.gate_input!r}")
        if self.kl_estimator not in ("mc", "bound"):
            raise ValueError(f"kl_estimator: expected 'mc' or 'bound', got {self.kl_estimator!r}")
        if self.rotation and self.state_dim != 3:
            raise ValueError(f"state_dim: rotation needs 3 (x, y, angle), got {self.state_dim}")
        if self.tau < 1:
            raise ValueError(f"tau: expected >= 1, got {self.tau}")

    @property
    def key_dim(self) -> int:
        """Dimension of DND keys: the state, with the angle as (cos, sin) under rotation."""
        return self.state_dim + 1 if self.rotation else self.state_dim
