"""Configuration of the Kalman variational auto-encoder (thesis chapter 6)."""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.checks import frame_shape

ENCODERS = ("conv", "mlp")
LIKELIHOODS = ("bernoulli", "gaussian")
DYNAMICS = ("lstm", "mlp")
PRIORS = ("lgssm", "gaussian")
ESTIMATORS = ("exact", "sampled", "marginal")
INITS = ("xavier", "torch")


@dataclass
class KVAEConfig:
    """Every choice of a KVAE; defaults follow the paper's bouncing-ball model (section 6.8).

    Shapes: frames ``obs_shape = (C, H, W)``, encodings ``a`` in R^a_dim, LGSSM states ``z`` in
    R^z_dim, controls ``u`` in R^action_dim (``u_t = actions[t - 1]``), K mixed modes.
    """

    obs_shape: tuple[int, int, int] = (1, 32, 32)
    action_dim: int = 1
    a_dim: int = 2
    z_dim: int = 4
    num_modes: int = 3  # K

    # VAE: recognition q(a_t | x_t) and decoder p(x_t | a_t)
    encoder: str = "conv"  # conv | mlp
    decoder: str = "conv"  # conv (sub-pixel) | mlp
    channels: int = 32
    num_layers: int = 3
    mlp_hidden: tuple[int, ...] = (128, 128)
    likelihood: str = "bernoulli"  # bernoulli (binary frames) | gaussian (learned per-pixel var)
    init_pixel_var: float = 0.1  # gaussian likelihood: initial per-pixel variance
    encoder_var_cap: float | None = 0.03  # var = cap * sigmoid(.) as in the reference; None: exp
    # initialisation of the encoder/decoder: xavier (glorot-uniform weights, zero biases: the TF
    # reference's defaults) | torch (PyTorch's defaults, which at lr 0.007 kill the encoder's
    # ReLUs in the first updates and leave the codes collapsed; see worldmodels.nets.init_xavier_)
    init: str = "xavier"

    # prior over a: the LGSSM (the KVAE) or a fixed N(0, I) per frame (plain VAE baseline)
    prior: str = "lgssm"  # lgssm | gaussian
    use_controls: bool = True  # B_t u_t enters the transition

    # dynamics parameter network alpha_t(a_{0:t-1})
    dynamics: str = "lstm"  # lstm (d_t = LSTM(a_{t-1}, d_{t-1})) | mlp (alpha_t(a_{t-1}))
    dynamics_hidden: int = 50
    concrete: bool = False  # sample alpha from a Concrete (relaxed one-hot) during training
    concrete_temperature: float = 0.5

    # LGSSM initialisation and noise (variances)
    init_transition_noise: float = 0.08  # Q = q I
    init_emission_noise: float = 0.03  # R = r I
    init_cov: float = 20.0  # P0 = p I
    learn_noise: bool = False
    init_bc_scale: float = 0.05  # B^(k), C^(k) ~ scale * N(0, 1); A^(k) = I

    # objective
    recon_weight: float = 0.3  # weight of log p(x|a) during training (evaluation uses 1)
    vae_warmup_updates: int = 0  # first training updates use the fixed N(0, I) prior (VAE only)
    estimator: str = "exact"  # exact log p(a|u) | sampled (eq. 6.8, joint z) | marginal (reference)
    kalman_method: str = "sequential"  # forwarded to worldmodels.kalman (sequential | parallel)

    def __post_init__(self) -> None:
        self.obs_shape = frame_shape(self.obs_shape)
        self.mlp_hidden = tuple(int(h) for h in self.mlp_hidden)
        for name, value, allowed in (
            ("encoder", self.encoder, ENCODERS), ("decoder", self.decoder, ENCODERS),
            ("likelihood", self.likelihood, LIKELIHOODS), ("dynamics", self.dynamics, DYNAMICS),
            ("prior", self.prior, PRIORS), ("estimator", self.estimator, ESTIMATORS),
            ("init", self.init, INITS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        for name in ("a_dim", "z_dim", "num_modes", "dynamics_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.action_dim < 0:
            raise ValueError(f"action_dim: expected >= 0, got {self.action_dim}")
