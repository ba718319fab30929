"""Pre-norm transformer layers of the Symphonies decoder (authors' parameter names)."""
from torch import nn

from .chunks import in_slices
from .deform_attn import MultiScaleDeformableAttention


def _ffn(embed_dims: int, mlp_ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed_dims, embed_dims * mlp_ratio), nn.GELU(),
                         nn.Linear(embed_dims * mlp_ratio, embed_dims))


def ffn_residual(query, norm: nn.LayerNorm, ffn: nn.Sequential):
    """``query + ffn(norm(query))`` for (B, N, C) queries, over slices of N at inference."""
    hidden = ffn[0].out_features * query.element_size()
    return in_slices(lambda q: q + ffn(norm(q)), query, bytes_per_token=2 * hidden)


class TransformerLayer(nn.Module):
    """``q + MHA(norm1(q) + q_pos, k + k_pos, v)``, then ``+ ffn(norm2(.))`` when mlp_ratio > 0.

    Only the query is normalized; for self-attention key and value are the raw query.
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(embed_dims) if mlp_ratio else None
        self.ffn = _ffn(embed_dims, mlp_ratio) if mlp_ratio else None

    def forward(self, query, key=None, value=None, query_pos=None, key_pos=None):
        """query (B, Nq, C); key, value (B, Nk, C) or None for self-attention → (B, Nq, C)."""
        if key is None and value is None:
            key = value = query
            key_pos = query_pos
        if key_pos is not None:
            key = key + key_pos
        normed = self.norm1(query)
        if query_pos is not None:
            normed = normed + query_pos
        query = query + self.attn(normed, key, value, need_weights=False)[0]
        if self.ffn is not None:
            query = ffn_residual(query, self.norm2, self.ffn)
        return query


class DeformableTransformerLayer(nn.Module):
    """``q + attn(norm1(q), ...)`` then ``+ ffn(norm2(.))`` when mlp_ratio > 0.

    The attention module adds its own identity (``norm1(q)``), so the output carries both
    ``q`` and ``norm1(q)``, exactly as the authors' layer does.
    """

    def __init__(self, embed_dims: int, num_heads: int = 8, num_levels: int = 3,
                 num_points: int = 4, mlp_ratio: int = 4, attn_layer=MultiScaleDeformableAttention):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims)
        self.attn = attn_layer(embed_dims, num_heads, num_levels, num_points)
        self.norm2 = nn.LayerNorm(embed_dims) if mlp_ratio else None
        self.ffn = _ffn(embed_dims, mlp_ratio) if mlp_ratio else None

    def forward(self, query, value, query_pos, ref_pts, spatial_shapes):
        """query (B, Nq, C), value (B, Nv, C), ref_pts (B, Nq, L, 2 or 3) → (B, Nq, C)."""
        query = query + self.attn(self.norm1(query), value, query_pos, ref_pts, spatial_shapes)
        if self.ffn is not None:
            query = ffn_residual(query, self.norm2, self.ffn)
        return query
