#version 450
// y[r, o] = Σ_k x[r, k] · W[o, k] for a few rows (decode): one workgroup per output feature and
// up to COLS rows; each invocation strides over k (adjacent invocations read adjacent weights),
// partial sums reduced through subgroupAdd (USE_SUBGROUP) or a shared-memory tree.
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
const uint COLS = 4u;

layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 1) readonly buffer XBuf { float X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };

layout(push_constant) uniform Push {
    uint xOff, yOff, rows, outF, inF, rowBytes, yStride;
} p;

#include "dequant.glsl"

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
#ifdef USE_SUBGROUP
    [[unroll]] for (uint c = 0u; c < COLS; c++) {
        float s = subgroupAdd(acc[c]);
        if (gl_SubgroupInvocationID == 0u) red[c][gl_SubgroupID] = s;
    }
    barrier();
    if (tid < ncols) {
        float s = 0.0;
        for (uint g = 0u; g < gl_NumSubgroups; g++) s += red[tid][g];
        Y[p.yOff + (c0 + tid) * p.yStride + o] = s;
    }
#else
    [[unroll]] for (uint c = 0u; c < COLS; c++) red[c][tid] = acc[c];
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s) {
            [[unroll]] for (uint c = 0u; c < COLS; c++) red[c][tid] += red[c][tid + s];
        }
        barrier();
    }
    if (tid < ncols) Y[p.yOff + (c0 + tid) * p.yStride + o] = red[tid][0];
#endif
}
