"""PQVAE-shared: a CLIP-embedding codec with one shared product-quantisation codebook.

``model`` (architectures), ``bitstream`` (entropy coders), ``checkpoint``
(safetensors + JSON), ``codec`` (embeddings ⇄ bytes), ``train`` (training).
"""
