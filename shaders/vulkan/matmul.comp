#version 450
// y[r, o] = Σ_k x[r, k] · W[o, k] for many rows (prefill, batched decode): tiles of 64 output
// features × BN rows (BN = 16, 32 or 64, a specialisation constant the host picks from the row
// count, so that a short batch does not compute a 64-row tile of padding), 32-wide k steps staged
// through shared memory. Each of the 64 invocations stages one weight row's 32-element run,
// dequantising its block once (wblock), and BN/8 runs of x as vec4s; then it accumulates 8 output
// features × BN/8 rows in fp32, reading both operands from shared memory as vec4s (16 loads for
// 256 multiply-adds at BN = 64), the k order within each sum unchanged.
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint BN = 64u;  // rows per tile: 16, 32 or 64
const uint BM = 64u;   // output features per tile
const uint BK = 32u;
const uint TN = BN / 8u;  // rows per invocation

layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 1) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer XBuf4 { vec4 X4[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };

layout(push_constant) uniform Push {
    uint xOff, yOff, rows, outF, inF, rowBytes, yStride;
} p;

#include "dequant.glsl"

// One padding vec4 per row keeps the 8 invocations that read the same k from one bank's column.
shared vec4 ws[BM][BK / 4u + 1u];
shared vec4 xs[64][BK / 4u + 1u];

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint o0 = gl_WorkGroupID.x * BM;
    uint r0 = gl_WorkGroupID.y * BN;
    uint tm = tid & 7u;    // outputs o0 + tm + 8i, i < 8
    uint tn = tid >> 3;    // rows r0 + tn + 8j, j < TN
    // x rows as vec4s when every row starts on a 16-byte boundary.
    bool aligned = (p.xOff & 3u) == 0u && (p.inF & 3u) == 0u;
    float acc[8][8];
    [[unroll]] for (uint i = 0u; i < 8u; i++) [[unroll]] for (uint j = 0u; j < 8u; j++) acc[i][j] = 0.0;
    for (uint k0 = 0u; k0 < p.inF; k0 += BK) {
        // Weights: invocation tid stages row o0 + tid.
        {
            uint o = o0 + tid;
            vec4 w[8];
            if (o < p.outF && k0 + BK <= p.inF) {
                wblock(o * p.rowBytes, k0, w);
            } else {
                [[unroll]] for (uint q = 0u; q < 8u; q++) {
                    vec4 v;
                    [[unroll]] for (uint c = 0u; c < 4u; c++) {
                        uint k = k0 + 4u * q + c;
                        v[c] = (o < p.outF && k < p.inF) ? wload(o * p.rowBytes, k) : 0.0;
                    }
                    w[q] = v;
                }
            }
            [[unroll]] for (uint q = 0u; q < 8u; q++) ws[tid][q] = w[q];
        }
        // Inputs: BN rows × 8 vec4s, BN / 8 per invocation.
        [[unroll]] for (uint e = 0u; e < 8u; e++) {
            if (e < TN) {
                uint idx = e * 64u + tid, rr = idx >> 3, q = idx & 7u;
                uint r = r0 + rr, k = k0 + 4u * q;
                vec4 v = vec4(0.0);
                if (r < p.rows) {
                    uint at = p.xOff + r * p.inF + k;
                    if (aligned) {
                        if (k < p.inF) v = X4[at >> 2];
                    } else {
                        [[unroll]] for (uint c = 0u; c < 4u; c++) v[c] = k + c < p.inF ? X[at + c] : 0.0;
                    }
                }
                xs[rr][q] = v;
            }
        }
        barrier();
        [[dont_unroll]] for (uint q = 0u; q < 8u; q++) {
            vec4 a[8], b[8];
            [[unroll]] for (uint i = 0u; i < 8u; i++) a[i] = ws[tm + 8u * i][q];
            [[unroll]] for (uint j = 0u; j < 8u; j++) if (j < TN) b[j] = xs[tn + 8u * j][q];
            [[unroll]] for (uint c = 0u; c < 4u; c++)
                [[unroll]] for (uint j = 0u; j < 8u; j++)
                    if (j < TN) [[unroll]] for (uint i = 0u; i < 8u; i++) acc[i][j] += a[i][c] * b[j][c];
        }
        barrier();
    }
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        uint r = r0 + tn + 8u * j;
        if (j >= TN || r >= p.rows) continue;
        [[unroll]] for (uint i = 0u; i < 8u; i++) {
            uint o = o0 + tm + 8u * i;
            if (o < p.outF) Y[p.yOff + r * p.yStride + o] = acc[i][j];
        }
    }
}
