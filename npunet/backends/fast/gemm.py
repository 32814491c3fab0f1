"""Grouped GEMMs of the im2col convolutions.

weight_mat is the weight as a GEMM operand: (O, K) for groups = 1, (G, O/G, K/G) for G groups, where
K = C_in/G * kh * kw is the GEMM depth (the rows of the column buffer); cols or d have L columns
(output pixels of a tile).
"""
import numpy as np


def gemm(weight_mat, cols, groups):
    """(O, K) @ (K, L) split into G groups: (G, O/G, K/G) @ (G, K/G, L) -> (O, L)."""
    if groups == 1:
        return weight_mat @ cols
    L = cols.shape[1]
    return np.matmul(weight_mat, cols.reshape(groups, -1, L)).reshape(-1, L)


def gemm_tn(weight_mat, d, groups):
    """W^T @ d per group: (O, K)^T @ (O, L) -> (K, L)."""
    if groups == 1:
        return weight_mat.T @ d
    L = d.shape[1]
    return np.matmul(weight_mat.transpose(0, 2, 1), d.reshape(groups, -1, L)).reshape(-1, L)


def gemm_nt(d, cols, groups):
    """d @ cols^T per group: (O, L) @ (K, L)^T -> (O, K) (grouped: (G, O/G, K/G))."""
    if groups == 1:
        return d @ cols.T
    L = d.shape[1]
    return np.matmul(d.reshape(groups, -1, L), cols.reshape(groups, -1, L).transpose(0, 2, 1))


def weight_matrix(weight, rows, groups):
    """The weight as the GEMM operand: (rows, -1) for one group, (G, rows/G, -1) for G groups.
    rows: O for conv2d's (O, C/G, kh, kw) weight, C_in for conv_transpose2d's (C_in, O/G, kh, kw)."""
    return weight.reshape(rows, -1) if groups == 1 else weight.reshape(groups, rows // groups, -1)
