#version 450
// Flash-style causal attention: one workgroup per (query, head) of one sequence; keys in tiles of
// WG with an online softmax (running max and sum, fp32), so no score row is stored. GQA: head h
// reads kv head h / (heads / kvHeads). Keys at positions below prefixLen come from the shared
// parent cache (PK/PV), the rest from the sequence's own rows. The query at position p sees keys
// lo ..= p, lo = max(0, p − window + 1) with a sliding window. Scores: q·k·scale, then
// cap·tanh(s/cap) when softcap > 0.
// Each invocation scores one key of the tile (q and k read as vec4s where every row starts on a
// 16-byte boundary: ALIGNED, which the host sets); the tile's maximum is a shared-memory tree;
// the values are accumulated by GROUPS groups of invocations, each taking every GROUPS-th key of
// the tile and 4 dimensions per invocation, and the groups' sums are added at the end.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ALIGNED = 0;
const uint MAXD = 256u;
const uint GROUPS = 4u;
const uint GW = WG / GROUPS;           // invocations per group
const uint PER = MAXD / 4u / 16u;      // vec4s of output per invocation (GW ≥ 16)

layout(std430, binding = 0) readonly buffer QBuf { float Q[]; };
layout(std430, binding = 1) readonly buffer KBuf { float K[]; };
layout(std430, binding = 1) readonly buffer KBuf4 { vec4 K4[]; };
layout(std430, binding = 2) readonly buffer VBuf { float V[]; };
layout(std430, binding = 2) readonly buffer VBuf4 { vec4 V4[]; };
layout(std430, binding = 3) readonly buffer PKBuf { float PK[]; };
layout(std430, binding = 3) readonly buffer PKBuf4 { vec4 PK4[]; };
layout(std430, binding = 4) readonly buffer PVBuf { float PV[]; };
layout(std430, binding = 4) readonly buffer PVBuf4 { vec4 PV4[]; };
layout(std430, binding = 5) writeonly buffer OBuf { float O[]; };

layout(push_constant) uniform Push {
    uint qOff, kOff, vOff, pkOff, pvOff, oOff;
    uint qStride, queries, firstPos, heads, kvHeads, headDim, prefixLen, window;
    float scale, softcap;
} p;

shared vec4 qs[MAXD / 4u];
shared float w[WG];
shared float red[WG];
shared vec4 part[GROUPS][MAXD / 4u];
shared float lpart[GROUPS];

vec4 key4(bool pre, uint at) {
    if (ALIGNED != 0u) return pre ? PK4[at >> 2] : K4[at >> 2];
    return pre ? vec4(PK[at], PK[at + 1u], PK[at + 2u], PK[at + 3u]) : vec4(K[at], K[at + 1u], K[at + 2u], K[at + 3u]);
}

vec4 value4(bool pre, uint at) {
    if (ALIGNED != 0u) return pre ? PV4[at >> 2] : V4[at >> 2];
    return pre ? vec4(PV[at], PV[at + 1u], PV[at + 2u], PV[at + 3u]) : vec4(V[at], V[at + 1u], V[at + 2u], V[at + 3u]);
}

void main() {
    uint gi = group_index();
    if (gi >= p.queries * p.heads) return;
    uint t = gi / p.heads, h = gi - t * p.heads;
    uint tid = gl_LocalInvocationID.x;
    uint d = p.headDim, d4 = d / 4u, kvStride = p.kvHeads * d;
    uint g = h / (p.heads / p.kvHeads);
    uint pos = p.firstPos + t;
    uint lo = (p.window > 0u && pos + 1u > p.window) ? pos + 1u - p.window : 0u;
    uint qb = p.qOff + t * p.qStride + h * d;
    for (uint i = tid; i < d4; i += WG) qs[i] = vec4(Q[qb + 4u * i], Q[qb + 4u * i + 1u], Q[qb + 4u * i + 2u], Q[qb + 4u * i + 3u]);
    barrier();
    uint grp = tid / GW, lane = tid - grp * GW;
    float m = -1.0 / 0.0, l = 0.0;
    vec4 acc[PER];
    [[unroll]] for (uint e = 0u; e < PER; e++) acc[e] = vec4(0.0);
    for (uint base = lo; base <= pos; base += WG) {
        uint n = min(WG, pos + 1u - base);
        uint j = base + tid;
        float s = -1.0 / 0.0;
        if (tid < n) {
            bool pre = j < p.prefixLen;
            uint kb = pre ? p.pkOff + j * kvStride + g * d : p.kOff + (j - p.prefixLen) * kvStride + g * d;
            float dot_ = 0.0;
            for (uint i = 0u; i < d4; i++) {
                vec4 qv = qs[i], kv = key4(pre, kb + 4u * i);
                dot_ += qv.x * kv.x;
                dot_ += qv.y * kv.y;
                dot_ += qv.z * kv.z;
                dot_ += qv.w * kv.w;
            }
            s = dot_ * p.scale;
            if (p.softcap > 0.0) s = p.softcap * tanh_fp32(s / p.softcap);
        }
        red[tid] = s;
        barrier();
        for (uint st = WG / 2u; st > 0u; st >>= 1) {
            if (tid < st) red[tid] = max(red[tid], red[tid + st]);
            barrier();
        }
        float tm = max(m, red[0]);
        w[tid] = tid < n ? exp(s - tm) : 0.0;
        barrier();
        float corr = exp(m - tm);
        l *= corr;
        [[unroll]] for (uint e = 0u; e < PER; e++) acc[e] *= corr;
        for (uint jj = grp; jj < n; jj += GROUPS) {
            float wj = w[jj];
            l += wj;
            uint jp = base + jj;
            bool pre = jp < p.prefixLen;
            uint vb = pre ? p.pvOff + jp * kvStride + g * d : p.vOff + (jp - p.prefixLen) * kvStride + g * d;
            [[unroll]] for (uint e = 0u; e < PER; e++) {
                uint i4 = lane + e * GW;
                if (i4 < d4) acc[e] += wj * value4(pre, vb + 4u * i4);
            }
        }
        m = tm;
        barrier();
    }
    [[unroll]] for (uint e = 0u; e < PER; e++) {
        uint i4 = lane + e * GW;
        if (i4 < d4) part[grp][i4] = acc[e];
    }
    if (lane == 0u) lpart[grp] = l;
    barrier();
    if (grp != 0u) return;
    float total = 0.0;
    [[unroll]] for (uint q = 0u; q < GROUPS; q++) total += lpart[q];
    float inv = 1.0 / total;
    uint ob = p.oOff + t * p.qStride + h * d;
    [[unroll]] for (uint e = 0u; e < PER; e++) {
        uint i4 = lane + e * GW;
        if (i4 < d4) {
            vec4 sum = part[0][i4];
            [[unroll]] for (uint q = 1u; q < GROUPS; q++) sum += part[q][i4];
            vec4 o = sum * inv;
            O[ob + 4u * i4] = o.x;
            O[ob + 4u * i4 + 1u] = o.y;
            O[ob + 4u * i4 + 2u] = o.z;
            O[ob + 4u * i4 + 3u] = o.w;
        }
    }
}
