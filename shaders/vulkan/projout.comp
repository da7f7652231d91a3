#version 450
// Directional ablation: x[r] ← x[r] − (x[r]·d) d for a unit direction d, one workgroup per row.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer DBuf { float D[]; };
layout(std430, binding = 1) buffer XBuf { float X[]; };
layout(push_constant) uniform Push { uint dOff, xOff, rows, width; } p;
shared float red[256];
void main() {
    uint r = group_index();
    if (r >= p.rows) return;
    uint tid = gl_LocalInvocationID.x, xb = p.xOff + r * p.width;
    float s = 0.0;
    for (uint i = tid; i < p.width; i += 256u) s += X[xb + i] * D[p.dOff + i];
    red[tid] = s;
    barrier();
    for (uint h = 128u; h > 0u; h >>= 1) {
        if (tid < h) red[tid] += red[tid + h];
        barrier();
    }
    float dot_ = red[0];
    for (uint i = tid; i < p.width; i += 256u) X[xb + i] -= dot_ * D[p.dOff + i];
}
