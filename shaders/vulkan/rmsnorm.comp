#version 450
// y[r] = (x[r] · 1/sqrt(mean(x[r]²) + eps)) · scale, one workgroup per row (x and y may be the same).
// Gemma's (1 + w) style arrives here already as a scale buffer.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) buffer YBuf { float Y[]; };
layout(std430, binding = 2) readonly buffer SBuf { float S[]; };
layout(push_constant) uniform Push { uint xOff, yOff, sOff, rows, width; float eps; } p;
shared float red[256];
void main() {
    uint r = group_index();
    if (r >= p.rows) return;
    uint tid = gl_LocalInvocationID.x;
    uint xb = p.xOff + r * p.width, yb = p.yOff + r * p.width;
    float s = 0.0;
    for (uint i = tid; i < p.width; i += 256u) { float v = X[xb + i]; s += v * v; }
    red[tid] = s;
    barrier();
    for (uint h = 128u; h > 0u; h >>= 1) {
        if (tid < h) red[tid] += red[tid + h];
        barrier();
    }
    float inv = 1.0 / sqrt(red[0] / float(p.width) + p.eps);
    for (uint i = tid; i < p.width; i += 256u) Y[yb + i] = (X[xb + i] * inv) * S[p.sOff + i];
}
