#version 450
// y[r, o] = Σ_k x[r, k] · W[o, k] for many rows (prefill, batched decode): 64 × 64 output tiles,
// 32-wide k steps staged through shared memory (weights dequantised once per tile as they are
// staged), each of the 256 invocations accumulating a 4 × 4 block in fp32.
#include "common.glsl"

layout(local_size_x = 256) in;
const uint BM = 64u;   // output features per tile
const uint BN = 64u;   // rows per tile
const uint BK = 32u;

layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 1) readonly buffer XBuf { float X[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };

layout(push_constant) uniform Push {
    uint xOff, yOff, rows, outF, inF, rowBytes, yStride;
} p;

#include "dequant.glsl"

shared float ws[BK][BM + 1u];
shared float xs[BK][BN + 1u];

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint o0 = gl_WorkGroupID.x * BM;
    uint r0 = gl_WorkGroupID.y * BN;
    uint to = (tid & 15u) * 4u;   // this invocation's 4 output features within the tile
    uint tr = (tid >> 4) * 4u;    // and its 4 rows
    float acc[4][4];
    [[unroll]] for (uint i = 0u; i < 4u; i++) [[unroll]] for (uint j = 0u; j < 4u; j++) acc[i][j] = 0.0;
    for (uint k0 = 0u; k0 < p.inF; k0 += BK) {
        // Stage BM × BK weights and BN × BK inputs: 8 elements each per invocation, k fastest.
        [[unroll]] for (uint e = 0u; e < 8u; e++) {
            uint idx = e * 256u + tid;
            uint kk = idx & (BK - 1u), rr = idx >> 5;
            uint k = k0 + kk;
            uint o = o0 + rr;
            ws[kk][rr] = (o < p.outF && k < p.inF) ? wload(o * p.rowBytes, k) : 0.0;
            uint r = r0 + rr;
            xs[kk][rr] = (r < p.rows && k < p.inF) ? X[p.xOff + r * p.inF + k] : 0.0;
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < BK; kk++) {
            float a[4], b[4];
            [[unroll]] for (uint i = 0u; i < 4u; i++) { a[i] = ws[kk][to + i]; b[i] = xs[kk][tr + i]; }
            [[unroll]] for (uint j = 0u; j < 4u; j++) [[unroll]] for (uint i = 0u; i < 4u; i++) acc[j][i] += a[i] * b[j];
        }
        barrier();
    }
    [[unroll]] for (uint j = 0u; j < 4u; j++) {
        uint r = r0 + tr + j;
        if (r >= p.rows) continue;
        [[unroll]] for (uint i = 0u; i < 4u; i++) {
            uint o = o0 + to + i;
            if (o < p.outF) Y[p.yOff + r * p.yStride + o] = acc[j][i];
        }
    }
}
