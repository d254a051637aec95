"""Downstream tasks on (compressed) CLIP embeddings (the PQVAE paper's §4.6).

``clipcap``: a ClipCap captioner (a mapping network from a CLIP image embedding
to a GPT-2 prefix) trained on COCO-style captions, optionally with a frozen
embedding codec in the loop; ``caption_eval``: captions from original and
decoded embeddings, scored against the reference captions with pycocoevalcap;
``referring``: referring-object identification, SAM regions' CLIP features
through each codec matched to the expression's CLIP text embedding.
"""
