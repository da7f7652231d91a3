#version 450
// y[r, o] = Σ_k x[r, k] · W[o, k] for a few rows (decode), up to COLS rows per workgroup.
// USE_SUBGROUP: each subgroup computes whole output features (OUTS per workgroup, taken by the
// subgroups in turn, so any subgroup size covers them), its lanes striding over k (adjacent lanes
// read adjacent weights) and reducing with subgroupAdd: no shared memory, no barrier, and a few
// thousand workgroups per layer instead of one per output feature. Otherwise one workgroup per
// output feature, its invocations striding over k and reducing through a shared-memory tree.
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
// Output features per workgroup (USE_SUBGROUP; the host picks WG / subgroup size).
layout(constant_id = 1) const uint OUTS = 1;
const uint COLS = 4u;

layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 1) readonly buffer XBuf { float X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };

layout(push_constant) uniform Push {
    uint xOff, yOff, rows, outF, inF, rowBytes, yStride;
} p;

#include "dequant.glsl"

#ifdef USE_SUBGROUP
void main() {
    uint c0 = gl_WorkGroupID.z * COLS;
    uint ncols = min(COLS, p.rows - c0);
    uint lane = gl_SubgroupInvocationID;
    uint first = group_index() * OUTS;
    for (uint j = gl_SubgroupID; j < OUTS; j += gl_NumSubgroups) {
        uint o = first + j;
        if (o >= p.outF) break;
        float acc[COLS];
        [[unroll]] for (uint c = 0u; c < COLS; c++) acc[c] = 0.0;
        uint rowByte = o * p.rowBytes;
        for (uint k = lane; k < p.inF; k += gl_SubgroupSize) {
            float w = wload(rowByte, k);
            [[unroll]] for (uint c = 0u; c < COLS; c++)
                if (c < ncols) acc[c] += w * X[p.xOff + (c0 + c) * p.inF + k];
        }
        [[unroll]] for (uint c = 0u; c < COLS; c++) {
            float s = subgroupAdd(acc[c]);
            if (lane == 0u && c < ncols) Y[p.yOff + (c0 + c) * p.yStride + o] = s;
        }
    }
}
#else
shared float red[COLS][WG];

void main() {
    uint o = group_index();
    if (o >= p.outF) return;
    uint tid = gl_LocalInvocationID.x;
    uint c0 = gl_WorkGroupID.z * COLS;
    uint ncols = min(COLS, p.rows - c0);
    float acc[COLS];
    [[unroll]] for (uint c = 0u; c < COLS; c++) acc[c] = 0.0;
    uint rowByte = o * p.rowBytes;
    for (uint k = tid; k < p.inF; k += WG) {
        float w = wload(rowByte, k);
        [[unroll]] for (uint c = 0u; c < COLS; c++)
            if (c < ncols) acc[c] += w * X[p.xOff + (c0 + c) * p.inF + k];
    }
    [[unroll]] for (uint c = 0u; c < COLS; c++) red[c][tid] = acc[c];
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s) {
            [[unroll]] for (uint c = 0u; c < COLS; c++) red[c][tid] += red[c][tid + s];
        }
        barrier();
    }
    if (tid < ncols) Y[p.yOff + (c0 + tid) * p.yStride + o] = red[tid][0];
}
#endif
