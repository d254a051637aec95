"""PQVAE-shared and its baselines (Shen et al., "Compression Beyond Pixels", MLSP 2025).

A CLIP image embedding x (L2-normalised) is mapped by a convolutional encoder
to a latent grid x_c of h × w positions with c channels, L2-normalised per
position (paper Sec. 3.1, Fig. 2). Each position is split into d = c / d_sub
subvectors, and every subvector is replaced by its nearest codeword of ONE
codebook shared by all subspaces and positions (Sec. 3.2, Algorithm 1). The
decoder mirrors the encoder back to the embedding, L2-normalised.

Training minimises (DESIGN.md; the paper's Eq. 7 with the reference weights)

    α·(1 − cos(x, x̂)) + ‖sg(x_c) − x̂_c‖² + β·‖x_c − sg(x̂_c)‖²

with straight-through gradients. Baselines share the interface:
``vqvae-kmeans`` (one k-means-initialised codebook per subspace),
``scalar`` (learned scalar quantisation, levels in [−0.5, 0.5]) and
``float32`` / ``float16`` (the uncompressed upper bounds).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

Architecture = Literal["pqvae-shared", "vqvae-kmeans", "scalar", "float32", "float16"]


class PQVAEConfig(BaseModel):
    """Everything that shapes a model and its bitstream; stored with every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Architecture = "pqvae-shared"
    input_dim: int = Field(default=768, ge=2)
    grid_h: int = Field(default=5, ge=1)
    grid_w: int = Field(default=5, ge=1)
    channels: int = Field(default=128, ge=1)
    d_sub: int = Field(default=16, ge=1)
    codebook_size: int = Field(default=4, ge=2)
    #: learned scalar quantisation: bits per embedding dimension (integer bpd)
    scalar_bits: int = Field(default=1, ge=1, le=8)
    hidden: tuple[int, int] = (512, 256)
    residual_hidden: int = 128
    residual_layers: int = 3
    #: codebook initialisation: ``normal`` (N(0, 1/d_sub)) or ``uniform`` (U(−1, 1), as the
    #: authors' reference code)
    codebook_init: Literal["normal", "uniform"] = "normal"
    #: biases in the convolutions (the reference code has none)
    conv_bias: bool = True
    #: transposed convolutions in the residual blocks (as the reference code)
    residual_transpose: bool = False

    @model_validator(mode="after")
    def _subspaces_divide_channels(self) -> PQVAEConfig:
        if self.channels % self.d_sub:
            raise ValueError(f"d_sub={self.d_sub} must divide channels={self.channels}")
        return self

    @property
    def subspaces(self) -> int:
        return self.channels // self.d_sub

    @property
    def symbols(self) -> int:
        """Indices per embedding: h · w · d (PQ), or input_dim (scalar)."""
        if self.architecture == "scalar":
            return self.input_dim
        return self.grid_h * self.grid_w * self.subspaces

    @property
    def alphabet(self) -> int:
        """Symbols each index can take."""
        if self.architecture == "scalar":
            return 2**self.scalar_bits
        return self.codebook_size

    @property
    def raw_bits(self) -> int:
        """Fixed-length rate: h·w·d·⌈log2 K⌉ bits (400 at the paper's preset)."""
        if self.architecture in ("float32", "float16"):
            return self.input_dim * (32 if self.architecture == "float32" else 16)
        return self.symbols * math.ceil(math.log2(self.alphabet))


#: the paper's configuration: 768-d ViT-L/14@336px embeddings, 5×5×128, d_sub 16, K 4 → 400 bits
PAPER_PRESET = PQVAEConfig()
#: the same, built as the authors' reference code builds it (``--schedule reference``):
#: codebook initialised U(−1, 1), no convolution biases, ``ConvTranspose2d`` in the residual blocks
REFERENCE_MODEL = {"codebook_init": "uniform", "conv_bias": False, "residual_transpose": True}


class Residual(nn.Module):
    """ReLU, 3×3 conv to ``hidden``, ReLU, 1×1 conv back, plus the skip (VQ-VAE's residual)."""

    def __init__(self, channels: int, hidden: int, bias: bool = True, transpose: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d  # same shapes at stride 1
        self.block = nn.Sequential(
            nn.ReLU(),
            conv(channels, hidden, 3, padding=1, bias=bias),
            nn.ReLU(),
            conv(hidden, channels, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResidualStack(nn.Sequential):
    def __init__(self, channels: int, config: PQVAEConfig):
        modules: list[nn.Module] = []
        for _ in range(config.residual_layers):
            residual = Residual(
                channels, config.residual_hidden, config.conv_bias, config.residual_transpose
            )
            modules += [residual, nn.ReLU()]
        super().__init__(*modules)


class Encoder(nn.Module):
    """x (B, k) as a k×1×1 map → ConvT(k→512, 3, s2) 3×3 → ConvT(512→256, 3, s2, p1) 5×5
    → residual stack → 3×3 conv to c channels; other grids resample the 5×5 map."""

    def __init__(self, config: PQVAEConfig):
        super().__init__()
        first, second = config.hidden
        bias = config.conv_bias
        self.grid = (config.grid_h, config.grid_w)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(config.input_dim, first, 3, stride=2, padding=0, bias=bias),
            nn.ReLU(),
            nn.ConvTranspose2d(first, second, 3, stride=2, padding=1, bias=bias),
            nn.ReLU(),
        )
        self.residual = ResidualStack(second, config)
        self.out = nn.Conv2d(second, config.channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x[:, :, None, None])
        if h.shape[-2:] != self.grid:
            h = F.interpolate(h, size=self.grid, mode="bilinear", align_corners=False)
        return F.normalize(self.out(self.residual(h)), dim=1)


class Decoder(nn.Module):
    """The mirror: 3×3 conv c→256, residual stack, conv 256→512 (5×5→3×3), conv 512→k (3×3→1)."""

    def __init__(self, config: PQVAEConfig):
        super().__init__()
        first, second = config.hidden
        bias = config.conv_bias
        self.inp = nn.Conv2d(config.channels, second, 3, padding=1, bias=bias)
        self.residual = ResidualStack(second, config)
        self.down = nn.Sequential(
            nn.Conv2d(second, first, 3, stride=2, padding=1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(first, config.input_dim, 3, stride=1, padding=0, bias=bias),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = self.residual(self.inp(latent))
        if h.shape[-2:] != (5, 5):
            h = F.interpolate(h, size=(5, 5), mode="bilinear", align_corners=False)
        return F.normalize(self.down(h).flatten(1), dim=1)


class ProductQuantizer(nn.Module):
    """Split each position's c channels into d subvectors; replace each by its nearest codeword.

    ``shared=True`` is PQVAE-shared (one K×d_sub codebook for every subspace and
    position); ``shared=False`` is the VQ-VAE baseline with one codebook per subspace.
    """

    def __init__(self, config: PQVAEConfig, shared: bool):
        super().__init__()
        self.d, self.d_sub, self.k = config.subspaces, config.d_sub, config.codebook_size
        books = 1 if shared else self.d
        if config.codebook_init == "uniform":
            initial = torch.rand(books, self.k, self.d_sub) * 2 - 1
        else:
            initial = torch.randn(books, self.k, self.d_sub) / math.sqrt(self.d_sub)
        self.codebook = nn.Parameter(initial)

    def subvectors(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) → (B, h·w, d, d_sub) in the bitstream's order (position, subspace)."""
        b, _c, h, w = latent.shape
        return latent.permute(0, 2, 3, 1).reshape(b, h * w, self.d, self.d_sub)

    def books(self) -> torch.Tensor:
        """One codebook per subspace: (d, K, d_sub) (the shared one repeated)."""
        return self.codebook.expand(self.d, -1, -1)

    def indices(self, latent: torch.Tensor) -> torch.Tensor:
        """Nearest codeword per subvector: (B, h·w·d) integers in [0, K)."""
        vectors = self.subvectors(latent)  # (B, P, d, s)
        books = self.books()  # (d, K, s)
        distances = (
            vectors.pow(2).sum(-1, keepdim=True)
            - 2 * torch.einsum("bpds,dks->bpdk", vectors, books)
            + books.pow(2).sum(-1)[None, None]
        )
        return distances.argmin(-1).flatten(1)

    def dequantize(self, indices: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """Indices (B, h·w·d) → quantised latent (B, c, h, w)."""
        b, c, h, w = shape
        grid = indices.reshape(b, h * w, self.d)
        books = self.books()
        subspace = torch.arange(self.d, device=indices.device).expand_as(grid)
        vectors = books[subspace, grid]  # (B, P, d, s)
        return vectors.reshape(b, h, w, c).permute(0, 3, 1, 2)


class ScalarQuantizer(nn.Module):
    """Learned scalar quantisation: each dimension to one of 2^bits levels in [−0.5, 0.5].

    The embedding is scaled (learned) into the level range; levels are learned
    and clipped to [−0.5, 0.5]. Rate: ``bits`` per dimension (integer bpd).
    """

    def __init__(self, config: PQVAEConfig):
        super().__init__()
        levels = 2**config.scalar_bits
        self.levels = nn.Parameter(torch.linspace(-0.5, 0.5, levels + 2)[1:-1].clone())
        self.log_scale = nn.Parameter(torch.tensor(math.log(0.5 * math.sqrt(config.input_dim) / 3)))

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.log_scale.exp()).clamp(-0.5, 0.5)

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.levels.clamp(-0.5, 0.5)
        return (self.scaled(x)[..., None] - levels).abs().argmin(-1)

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        return self.levels.clamp(-0.5, 0.5)[indices] / self.log_scale.exp()


class EmbeddingCodecModel(nn.Module):
    """One interface for every architecture: ``indices(x)``, ``decode(indices)``, ``forward(x)``."""

    def __init__(self, config: PQVAEConfig):
        super().__init__()
        self.config = config
        arch = config.architecture
        self.encoder = self.decoder = self.quantizer = None
        if arch in ("pqvae-shared", "vqvae-kmeans"):
            self.encoder = Encoder(config)
            self.decoder = Decoder(config)
            self.quantizer = ProductQuantizer(config, shared=arch == "pqvae-shared")
        elif arch == "scalar":
            self.quantizer = ScalarQuantizer(config)
        else:  # float32 / float16: nothing to learn
            self.register_buffer("_unused", torch.zeros(1))

    @property
    def quantised(self) -> bool:
        return self.config.architecture not in ("float32", "float16")

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x) if self.encoder is not None else x

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        c = self.config
        return (batch, c.channels, c.grid_h, c.grid_w)

    @torch.no_grad()
    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """Quantisation indices of L2-normalised embeddings: (B, symbols)."""
        x = F.normalize(x, dim=-1)
        return self.quantizer.indices(self.latent(x))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Decoded (L2-normalised) embeddings from indices: (B, input_dim)."""
        if self.config.architecture == "scalar":
            return F.normalize(self.quantizer.dequantize(indices), dim=-1)
        latent = self.quantizer.dequantize(indices, self.latent_shape(indices.shape[0]))
        return self.decoder(latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂, codebook loss, commitment loss) with straight-through gradients."""
        x = F.normalize(x, dim=-1)
        if self.config.architecture == "scalar":
            scaled = self.quantizer.scaled(x)
            levels = self.quantizer.levels.clamp(-0.5, 0.5)
            quantised = levels[(scaled[..., None] - levels).abs().argmin(-1)]
            codebook = F.mse_loss(quantised, scaled.detach())
            commitment = F.mse_loss(scaled, quantised.detach())
            straight = scaled + (quantised - scaled).detach()
            return (
                F.normalize(straight / self.quantizer.log_scale.exp(), dim=-1),
                codebook,
                commitment,
            )
        latent = self.encoder(x)
        indices = self.quantizer.indices(latent)
        quantised = self.quantizer.dequantize(indices, tuple(latent.shape))
        codebook = F.mse_loss(quantised, latent.detach())
        commitment = F.mse_loss(latent, quantised.detach())
        straight = latent + (quantised - latent).detach()
        return self.decoder(straight), codebook, commitment
