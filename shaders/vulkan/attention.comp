#version 450
// Flash-style causal attention: one workgroup per (query, head) of one sequence; keys in tiles of
// WG with an online softmax (running max and sum, fp32), so no score row is stored. GQA: head h
// reads kv head h / (heads / kvHeads). Keys at positions below prefixLen come from the shared
// parent cache (PK/PV), the rest from the sequence's own rows. The query at position p sees keys
// lo ..= p, lo = max(0, p − window + 1) with a sliding window. Scores: q·k·scale, then
// cap·tanh(s/cap) when softcap > 0.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
const uint MAXD = 256u;
const uint PER = 8u;   // output dims per invocation: headDim ≤ PER · WG

layout(std430, binding = 0) readonly buffer QBuf { float Q[]; };
layout(std430, binding = 1) readonly buffer KBuf { float K[]; };
layout(std430, binding = 2) readonly buffer VBuf { float V[]; };
layout(std430, binding = 3) readonly buffer PKBuf { float PK[]; };
layout(std430, binding = 4) readonly buffer PVBuf { float PV[]; };
layout(std430, binding = 5) writeonly buffer OBuf { float O[]; };

layout(push_constant) uniform Push {
    uint qOff, kOff, vOff, pkOff, pvOff, oOff;
    uint qStride, queries, firstPos, heads, kvHeads, headDim, prefixLen, window;
    float scale, softcap;
} p;

shared float qs[MAXD];
shared float w[WG];

void main() {
    uint gi = group_index();
    if (gi >= p.queries * p.heads) return;
    uint t = gi / p.heads, h = gi - t * p.heads;
    uint tid = gl_LocalInvocationID.x;
    uint d = p.headDim, kvStride = p.kvHeads * d;
    uint g = h / (p.heads / p.kvHeads);
    uint pos = p.firstPos + t;
    uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    uint qb = p.qOff + t * p.qStride + h * d;
    for (uint i = tid; i < d; i += WG) qs[i] = Q[qb + i];
    barrier();
    float m = -1.0 / 0.0, l = 0.0;
    float acc[PER];
    [[unroll]] for (uint e = 0u; e < PER; e++) acc[e] = 0.0;
    for (uint base = lo; base <= pos; base += WG) {
        uint n = min(WG, pos + 1u - base);
        uint j = base + tid;
        float s = -1.0 / 0.0;
        if (tid < n) {
            float dot_ = 0.0;
            if (j < p.prefixLen) {
                uint kb = p.pkOff + j * kvStride + g * d;
                for (uint i = 0u; i < d; i++) dot_ += qs[i] * PK[kb + i];
            } else {
                uint kb = p.kOff + (j - p.prefixLen) * kvStride + g * d;
                for (uint i = 0u; i < d; i++) dot_ += qs[i] * K[kb + i];
            }
            s = dot_ * p.scale;
            if (p.softcap > 0.0) s = p.softcap * tanh_fp32(s / p.softcap);
        }
        w[tid] = s;
        barrier();
        float tm = m;
        for (uint jj = 0u; jj < n; jj++) tm = max(tm, w[jj]);
        barrier();
        if (tid < n) w[tid] = exp(s - tm);
        barrier();
        float corr = exp(m - tm);
        l *= corr;
        [[unroll]] for (uint e = 0u; e < PER; e++) acc[e] *= corr;
        for (uint jj = 0u; jj < n; jj++) {
            float wj = w[jj];
            l += wj;
            uint jp = base + jj;
            bool pre = jp < p.prefixLen;
            uint vb = pre ? p.pvOff + jp * kvStride + g * d : p.vOff + (jp - p.prefixLen) * kvStride + g * d;
            [[unroll]] for (uint e = 0u; e < PER; e++) {
                uint i = tid + e * WG;
                if (i < d) acc[e] += wj * (pre ? PV[vb + i] : V[vb + i]);
            }
        }
        m = tm;
        barrier();
    }
    uint ob = p.oOff + t * p.qStride + h * d;
    float inv = 1.0 / l;
    [[unroll]] for (uint e = 0u; e < PER; e++) {
        uint i = tid + e * WG;
        if (i < d) O[ob + i] = acc[e] * inv;
    }
}
